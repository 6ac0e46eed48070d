"""Whether estimates are shifted in time against their references: a constant lag, found by
cross-correlation, for one warning line per track.

An estimate that lags (or leads) its reference by a constant number of samples is scored by
BSSEval v4 and by the global SDR as separation error, though nothing is wrong but the timing:
a decoder's priming delay (1024 or 2112 samples for AAC, depending on the encoder; 1105 for
LAME's MP3s), or a tool that drops or adds samples at the start. BSSEval's distortion filters
absorb only a delay of the estimate shorter than ``filters_len`` (512 taps), none at all of an
estimate that comes early; the global SDR absorbs none. Scores are not changed here: the
warning is the point.

How, per source (each on its own, so that the sources can be compared):

1. **Where**: the loudest ``window_seconds`` of the reference, judged from a few short probes
   of the mono reference spread over the track (reading the whole track for its loudness would
   cost more than everything else here). The estimate is taken over the same samples; both
   lose their mean and are tapered at the ends (identical edges would otherwise leak alike
   into the spectrum and match at lag 0).
2. **Correlation**: of the two mono windows, by FFT, *whitened* (a generalised
   cross-correlation): the cross-spectrum is divided by a smoothed spectral envelope of the two
   (the power averaged over ``2 * _SMOOTH + 1`` bins, floored at ``_FLOOR`` of its maximum),
   and the result normalised by the two signals' whitened energies (Cauchy-Schwarz: its
   magnitude is at most 1, and 1 for an estimate equal to the reference). Without whitening
   music's low frequencies dominate and the peak is broad, so that a poor estimate's errors
   move it. Unlike the plain phase transform, the envelope is shared by both signals, so an
   estimate with content where the reference has none (a band-limited MUSDB18 reference, a
   full-band estimate) does not drown the match. The DC bin is left out.
3. **Verdict**: the source's lag is ``k`` when the largest correlation magnitude is at lag
   ``k``, inside the search range (not at its edge, where a lag beyond the range shows up), and
   is at least :data:`MIN_PEAK` (an absolute floor), :data:`MIN_SPREADS` times the
   correlation's spread over all lags (unrelated signals, narrow-band ones included, peak
   within about 5.5 spreads), :data:`MIN_CLARITY` times the largest value away from it (a held
   note matches one period away almost as well as at the true lag: no verdict, rather than the
   wrong one), and, for ``k != 0``, :data:`MIN_RATIO` times the magnitude at lag 0. A correctly
   aligned estimate, however poor, peaks at lag 0 or nowhere: its errors are not the
   reference, shifted. A silent window gives no verdict.

The track's lag is the strongest source's among those lagging by :data:`MIN_LAG` samples or
more, with the sources that agree with it to a sample; :func:`describe` words the warning.
Cost: two FFTs and one inverse of ``window + max_lag`` samples per source, in float32 (the peak
needs three digits): 20-40 ms per track on one CPU core, whatever the track's length.

Checked (``tests/engine/test_alignment.py``, and by hand on a MUSDB18 track with masked
estimates): shifts of 1024, 1105, 2112 and -1024 samples are found, aligned estimates (exact,
masked, noisy, noise plus a tenth of the reference, the mixture itself) never give a lag, nor do
silence, offsets, echoes, inverted or swapped estimates, or unrelated narrow-band signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cumx_cli.engine.shapes import check_shape

#: How far a lag is searched for, each way.
MAX_LAG_SECONDS = 1.0
#: The length of reference correlated per source.
WINDOW_SECONDS = 2.0
#: The smallest correlation magnitude taken as a match (1 for an estimate equal to its reference,
#: 0.6-0.8 for a decent separation; unrelated broad-band signals stay below about 0.03 over 2 s,
#: narrow-band ones reach 0.25, which :data:`MIN_SPREADS` rules out).
MIN_PEAK = 0.1
#: How many times larger than at lag 0 the peak must be.
MIN_RATIO = 3.0
#: How many times larger than anywhere else (beyond ``_PEAK_WIDTH`` samples of it) it must be.
MIN_CLARITY = 1.5
_PEAK_WIDTH = 64
#: How many times the correlation's spread (its std over all lags, from the median magnitude)
#: the peak must be: a narrow-band source correlates with an unrelated one up to 0.25 at some
#: lag, but stays within about 5.5 times that spread; true matches stand 9 or more above it.
MIN_SPREADS = 8.0
#: Shorter lags are not reported: a filter's phase shifts a tonal source that much (an
#: estimate's phase is not a time shift), and BSSEval's distortion filters absorb such delays.
MIN_LAG = 32
#: Probes of the reference's loudness: how many, and how long each is.
_PROBES = 32
_PROBE_SAMPLES = 2048
#: A window whose samples all stay below this (-100 dBFS, per channel) is silence: no verdict.
_SILENT = 1e-5
#: Whitening: the spectral envelope is the power averaged over this many bins each side, and
#: bins weaker than this fraction of its maximum are not raised to it.
_SMOOTH = 32
_FLOOR = 1e-6


@dataclass(frozen=True)
class SourceLag:
    """One source's verdict: ``samples`` > 0 when the estimate comes late (0: aligned), with the
    correlation magnitude at that lag (``peak``) and at lag 0 (``zero``)."""

    source: str
    samples: int
    peak: float
    zero: float


@dataclass(frozen=True)
class Lag:
    """A track's constant lag: ``samples`` > 0 when the estimates come late, < 0 when early, at
    ``rate`` Hz.

    ``sources`` show it (to a sample); ``checked`` are all the sources that gave a verdict
    (lagged or aligned), so ``sources == checked`` means every estimate is shifted.
    """

    samples: int
    sources: tuple[str, ...]
    checked: tuple[str, ...]
    rate: int

    def to_dict(self) -> dict[str, Any]:
        """As JSON values (the score file's ``cumx_lag``)."""
        return {"samples": self.samples, "sources": list(self.sources),
                "checked": list(self.checked), "rate": self.rate}

    @classmethod
    def from_dict(cls, data: Any) -> Lag | None:
        """The lag stored by :meth:`to_dict`, or None for anything else (no lag, an old file)."""
        try:
            return cls(int(data["samples"]), tuple(str(s) for s in data["sources"]),
                       tuple(str(s) for s in data["checked"]), int(data["rate"]))
        except (KeyError, TypeError, ValueError):
            return None


def detect_lag(references: torch.Tensor, estimates: torch.Tensor, rate: int,
               sources: Sequence[str], *, max_lag_seconds: float = MAX_LAG_SECONDS,
               window_seconds: float = WINDOW_SECONDS) -> Lag | None:
    """The estimates' constant lag against the references, or None when none is clear: the
    strongest lagged source's lag, with every source whose lag is within a sample of it.

    Shapes:
        references, estimates: (source, channel, time), same shape
    """
    verdicts = [v for v in source_lags(references, estimates, rate, sources,
                                       max_lag_seconds=max_lag_seconds,
                                       window_seconds=window_seconds) if v is not None]
    lagged = [v for v in verdicts if abs(v.samples) >= MIN_LAG]
    if not lagged:
        return None
    strongest = max(lagged, key=lambda v: v.peak)
    agree = tuple(v.source for v in lagged if abs(v.samples - strongest.samples) <= 1)
    return Lag(strongest.samples, agree, tuple(v.source for v in verdicts), rate)


def describe(lag: Lag, track: str) -> str:
    """The warning line: which estimates, how many samples (and ms), which way, what to do."""
    way = "lag" if lag.samples > 0 else "lead"
    if set(lag.sources) == set(lag.checked):
        whose = f"the estimates {way} the references"
    else:
        whose = f"the estimates of {', '.join(lag.sources)} {way} their references"
    samples = abs(lag.samples)
    return (f"track {track!r}: {whose} by {samples} sample{'s' if samples != 1 else ''} "
            f"({1000 * samples / lag.rate:.1f} ms); BSSEval and the global SDR score this as "
            "separation error: check the tool that wrote them")


def source_lags(references: torch.Tensor, estimates: torch.Tensor, rate: int,
                sources: Sequence[str], *, max_lag_seconds: float = MAX_LAG_SECONDS,
                window_seconds: float = WINDOW_SECONDS) -> list[SourceLag | None]:
    """Each source's verdict (None: silent, or no clear match), in the order of ``sources``.

    Shapes:
        references, estimates: (source, channel, time), same shape
    """
    check_shape(references, ("source", "channel", "time"), source=len(sources))
    check_shape(estimates, ("source", "channel", "time"), source=len(sources),
                channel=references.shape[1], time=references.shape[2])
    length = references.shape[-1]
    window = min(int(window_seconds * rate), length)
    max_lag = min(int(max_lag_seconds * rate), length // 2, window - 1)
    if max_lag < 2 or window < 64:
        return [None] * len(sources)
    ref, est = _mono_windows(references, estimates, window)
    quiet = references.shape[1] * _SILENT
    silent = (ref.abs().amax(-1) < quiet) | (est.abs().amax(-1) < quiet)
    values = _whitened_correlation(ref, est, max_lag).abs()  # (source, 2 * max_lag + 1)
    best = values.argmax(-1)
    # the values' std, were they all noise (robust: from the median magnitude, of every fourth
    # lag, which is plenty and a quarter of the work)
    spreads = 1.4826 * values[:, ::4].median(-1).values
    verdicts: list[SourceLag | None] = []
    for j, source in enumerate(sources):
        lag = int(best[j]) - max_lag
        peak, zero = float(values[j, best[j]]), float(values[j, max_lag])
        others = values[j].clone()
        others[max(int(best[j]) - _PEAK_WIDTH, 0):int(best[j]) + _PEAK_WIDTH + 1] = 0
        if silent[j] or peak < MIN_PEAK or abs(lag) >= max_lag:
            verdicts.append(None)  # nothing to match, or a peak at the range's edge
        elif peak < MIN_SPREADS * float(spreads[j]):
            verdicts.append(None)  # no taller than what unrelated signals reach by chance
        elif peak < MIN_CLARITY * float(others.max()):
            verdicts.append(None)  # another lag matches almost as well: a period away, say
        elif lag == 0 or peak >= MIN_RATIO * zero:
            verdicts.append(SourceLag(source, lag, peak, zero))
        else:
            verdicts.append(None)  # a match, but not clearly better than no shift
    return verdicts


def _mono_windows(references: torch.Tensor, estimates: torch.Tensor, window: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per source, the channel sums of reference and estimate over the reference's loudest
    ``window`` samples, less their means, tapered (:func:`_taper`), in float32.

    Shapes:
        references, estimates: (source, channel, time)
        returns: (source, window) twice
    """
    length = references.shape[-1]
    probe = min(_PROBE_SAMPLES, window)
    starts = torch.linspace(0, length - probe, min(_PROBES, length // probe)).long()
    probes = references[:, :, starts[:, None] + torch.arange(probe)].float().sum(1)
    centres = starts[probes.square().sum(-1).argmax(-1)] + probe // 2  # (source,)
    first = [min(max(int(c) - window // 2, 0), length - window) for c in centres]
    ref = torch.stack([references[j, :, s:s + window].float().sum(0) for j, s in enumerate(first)])
    est = torch.stack([estimates[j, :, s:s + window].float().sum(0) for j, s in enumerate(first)])
    taper = _taper(window)
    return ((ref - ref.mean(-1, keepdim=True)) * taper,
            (est - est.mean(-1, keepdim=True)) * taper)


def _taper(length: int) -> torch.Tensor:
    """A Tukey window: raised-cosine ramps over the first and last tenth. The windows' edges
    are the same samples in reference and estimate, so untapered their spectral leakage would
    match at lag 0, and fill the bins between a tonal source's harmonics with a false "aligned"."""
    ramp = max(length // 10, 1)
    taper = torch.ones(length)
    rise = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(ramp) + 0.5) / ramp)
    taper[:ramp] = rise
    taper[length - ramp:] = rise.flip(0)
    return taper


def _whitened_correlation(ref: torch.Tensor, est: torch.Tensor, max_lag: int) -> torch.Tensor:
    """The normalised, whitened correlation of ``est`` shifted by ``k`` against ``ref``, for
    ``k`` from ``-max_lag`` to ``max_lag`` (index ``k + max_lag``); see the module docstring.

    Shapes:
        ref, est: (source, window)
        returns: (source, 2 * max_lag + 1)
    """
    size = _fast_length(ref.shape[-1] + max_lag)  # no wrap-around within +-max_lag
    ref_f, est_f = torch.fft.rfft(ref, n=size), torch.fft.rfft(est, n=size)
    ref_p = ref_f.real.square() + ref_f.imag.square()
    est_p = est_f.real.square() + est_f.imag.square()
    envelope = _moving_average((ref_p + est_p) / 2, _SMOOTH)
    weight = 1 / (envelope + _FLOOR * envelope.amax(-1, keepdim=True)
                  + torch.finfo(torch.float32).tiny)
    weight[:, 0] = 0  # DC: an offset is not a match
    # Parseval over the full spectrum: every rfft bin but DC (and Nyquist) stands for two
    twice = torch.full((size // 2 + 1,), 2.0)
    twice[0] = 1
    if size % 2 == 0:
        twice[-1] = 1
    energy = ((weight * ref_p * twice).sum(-1) * (weight * est_p * twice).sum(-1)).sqrt() / size
    corr = torch.fft.irfft(weight * ref_f.conj() * est_f, n=size)
    corr = corr / energy.clamp_min(torch.finfo(torch.float32).tiny)[:, None]
    return torch.cat([corr[:, size - max_lag:], corr[:, :max_lag + 1]], dim=-1)  # k < 0 wraps


def _moving_average(power: torch.Tensor, half: int) -> torch.Tensor:
    """The mean over the ``2 * half + 1`` bins centred on each bin (fewer at the ends), along the
    last axis, from a float64 running sum (weak bins beside strong ones keep their digits).

    Shapes:
        power: (row, bin)
    """
    width = 2 * half + 1
    total = torch.nn.functional.pad(power.double().cumsum(-1), (half + 1, 0))
    total = torch.cat([total, total[:, -1:].expand(-1, half)], dim=-1)
    count = torch.arange(power.shape[-1] + width, dtype=torch.float64) - half
    count = count.clamp(0, power.shape[-1])
    return ((total[:, width:] - total[:, :-width]) / (count[width:] - count[:-width])
            ).to(power.dtype)


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c 7^d >= n: an FFT length without large prime factors."""
    best = 1 << max(n - 1, 1).bit_length()
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                p2 = p3
                while p2 < n:
                    p2 *= 2
                best = min(best, p2)
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best
