"""The lag check: shifted estimates are found, in either direction and whatever the source's
spectrum; aligned ones never are, however poor, nor are silence, offsets or unrelated signals."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.evaluation import alignment
from cumx_cli.engine.evaluation.alignment import Lag, describe, detect_lag, source_lags
from tests.synthetic_musdb import RATE, SOURCES, estimates, sources


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` delayed by ``lag`` samples (early when negative), zeros where nothing is known."""
    out = np.zeros_like(x)
    if lag > 0:
        out[..., lag:] = x[..., :-lag]
    elif lag < 0:
        out[..., :lag] = x[..., -lag:]
    else:
        out[...] = x
    return out


def _tonal(length: int, f0: float, seed: int) -> np.ndarray:
    """A held, slowly swelling note with five harmonics, stereo: a bass line at its most
    periodic, which plain correlation matches one period away as well as at the true lag."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / RATE
    note = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 6))
    note = note * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    return np.stack([note, 0.8 * note]) * 0.1


def _references(seconds: float, seed: int = 3) -> np.ndarray:
    """(source, channel, time): coloured noises, with a tonal bass line as the third source."""
    length = int(seconds * RATE)
    refs = sources(4, 2, length, seed=seed)
    refs[2] = _tonal(length, 55.0, seed)
    return refs


def _lag(refs: np.ndarray, ests: np.ndarray) -> Lag | None:
    return detect_lag(torch.from_numpy(refs).float(), torch.from_numpy(ests).float(), RATE,
                      SOURCES)


@pytest.fixture(scope="module", params=[1.5, 4.5], ids=["1.5s", "4.5s"])
def refs(request: pytest.FixtureRequest) -> np.ndarray:
    """A short track (the whole of it is the window) and a longer one (its loudest 2 s)."""
    return _references(request.param)


@pytest.mark.parametrize("lag", [1024, 1105, 2112, -1024, -2112, 40, 300])
def test_a_shifted_estimate_is_found_with_its_lag(refs: np.ndarray, lag: int) -> None:
    found = _lag(refs, _shift(estimates(refs), lag))
    assert found is not None and found.samples == lag
    assert found.sources == found.checked and len(found.checked) >= 3  # all that gave a verdict
    assert found.rate == RATE


@pytest.mark.parametrize("lag", [1024, -1105])
def test_an_exact_copy_shifted_is_found_in_every_source(lag: int) -> None:
    refs = sources(4, 2, int(3 * RATE), seed=5)  # four coloured noises, no tonal source
    found = _lag(refs, _shift(refs, lag))
    assert found is not None and found.samples == lag and found.sources == SOURCES


@pytest.mark.parametrize("lag", [0, 1024, 1826, -1105])
def test_a_tonal_source_never_gives_a_wrong_lag(refs: np.ndarray, lag: int) -> None:
    """Shifted by ``lag`` (1826 = 1024 + one period of 55 Hz), the held note matches a period
    away almost as well as at the true lag: its verdict is the right lag or none, never another."""
    verdict = source_lags(torch.from_numpy(refs).float(),
                          torch.from_numpy(_shift(refs, lag)).float(), RATE, SOURCES)[2]
    assert verdict is None or verdict.samples == lag


def test_aligned_estimates_give_no_lag(refs: np.ndarray) -> None:
    assert _lag(refs, refs) is None
    assert _lag(refs, estimates(refs)) is None  # leakage, noise and a short filter
    verdicts = source_lags(torch.from_numpy(refs).float(),
                           torch.from_numpy(estimates(refs)).float(), RATE, SOURCES)
    assert all(v is None or v.samples == 0 for v in verdicts)
    assert sum(v is not None for v in verdicts) >= 3  # the noises are seen to be aligned


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_a_poor_but_aligned_estimate_gives_no_lag(refs: np.ndarray, share: float) -> None:
    """Noise as loud as the reference, plus a tenth (or a third) of the reference."""
    rng = np.random.default_rng(7)
    noise = rng.standard_normal(refs.shape) * refs.std(-1, keepdims=True)
    assert _lag(refs, noise + share * refs) is None
    assert _lag(refs, noise) is None  # nothing of the reference at all


def test_a_poor_periodic_estimate_is_not_matched_a_period_away() -> None:
    """The tonal source alone, aligned, with noise: its correlation has peaks a period (802
    samples) either side as tall as at lag 0; whitening and the ratio test keep them out."""
    refs = _references(6.0)
    rng = np.random.default_rng(1)
    for share in (0.3, 1.0):
        noisy = share * refs + 0.5 * rng.standard_normal(refs.shape) * refs.std(-1, keepdims=True)
        verdicts = source_lags(torch.from_numpy(refs).float(), torch.from_numpy(noisy).float(),
                               RATE, SOURCES)
        assert all(v is None or v.samples == 0 for v in verdicts), verdicts


def test_silence_offsets_and_swapped_sources_give_no_lag(refs: np.ndarray) -> None:
    assert _lag(refs, np.zeros_like(refs)) is None
    assert _lag(np.zeros_like(refs), refs) is None  # a silent reference: no verdict either
    assert _lag(refs, refs + 0.5) is None  # an offset is not a lag
    assert _lag(refs, np.full_like(refs, 0.25)) is None  # nothing but an offset
    found = _lag(refs, _shift(refs, 1024) - 0.3)  # nor does it hide one
    assert found is not None and found.samples == 1024
    assert _lag(refs, refs[[1, 0, 3, 2]]) is None  # each estimate another source's reference
    assert _lag(refs, -refs) is None  # inverted, but aligned
    assert _lag(refs, refs + 0.5 * _shift(refs, 2000)) is None  # an echo behind the direct sound


def test_one_shifted_source_is_named() -> None:
    refs = _references(3.0)
    ests = estimates(refs)
    ests[1] = _shift(ests[1], 2112)
    found = _lag(refs, ests)
    assert found is not None and found.samples == 2112 and found.sources == ("drums",)
    assert describe(found, "A - One") == (
        "track 'A - One': the estimates of drums lag their references by 2112 samples "
        "(47.9 ms); BSSEval and the global SDR score this as separation error: check the "
        "tool that wrote them")


def test_shifts_shorter_than_min_lag_are_not_reported(refs: np.ndarray) -> None:
    """A few samples is what a filter's phase does to a tonal source; BSSEval absorbs it."""
    for lag in (1, -3, alignment.MIN_LAG - 1):
        assert _lag(refs, _shift(refs, lag)) is None
    verdicts = source_lags(torch.from_numpy(refs).float(),
                           torch.from_numpy(_shift(refs, 3)).float(), RATE, SOURCES)
    assert any(v is not None and v.samples == 3 for v in verdicts)  # seen, only not reported


def _narrow_band(length: int, centre: float, width: float, seed: int) -> np.ndarray:
    """Stereo noise band-passed around ``centre`` Hz, ``width`` Hz wide."""
    rng = np.random.default_rng(seed)
    k = np.arange(-2048, 2048)
    taps = np.sinc(2 * width * k / RATE) * np.cos(2 * np.pi * centre * k / RATE) * np.hanning(4096)
    noise = rng.standard_normal((2, length + 4096))
    size = length + 2 * 4096
    band = np.fft.irfft(np.fft.rfft(noise, size) * np.fft.rfft(taps, size), size)
    return band[:, 4096:4096 + length] * 0.01


@pytest.mark.parametrize("seed", range(4))
def test_unrelated_narrow_band_estimates_give_no_lag(seed: int) -> None:
    """Unrelated signals with the same narrow spectra correlate up to 0.25 at some lag (above
    MIN_PEAK): the spread and clarity tests keep that from being read as a match."""
    bands = [(80, 20), (300, 30), (12000, 100), (2000, 50)]
    length = 3 * RATE
    refs = np.stack([_narrow_band(length, f, w, 100 + 8 * seed + j)
                     for j, (f, w) in enumerate(bands)])
    ests = np.stack([_narrow_band(length, f, w, 900 + 8 * seed + j)
                     for j, (f, w) in enumerate(bands)])
    assert source_lags(torch.from_numpy(refs).float(), torch.from_numpy(ests).float(), RATE,
                       SOURCES) == [None] * 4
    # shifted copies of such bands match over a wide spread of lags: no lag rather than a wrong one
    found = _lag(refs, _shift(refs, 1105))
    assert found is None or found.samples == 1105


def test_a_lag_beyond_the_search_range_is_not_misread() -> None:
    """40000 samples on a 1.5 s track: beyond what the track allows to search (half of it);
    nothing, rather than a wrong lag at the range's edge."""
    refs = _references(1.5)
    assert _lag(refs, _shift(refs, 40000)) is None


def test_the_warning_names_the_lag_in_samples_and_ms() -> None:
    lag = Lag(1024, SOURCES, SOURCES, RATE)
    assert describe(lag, "X") == (
        "track 'X': the estimates lag the references by 1024 samples (23.2 ms); BSSEval and the "
        "global SDR score this as separation error: check the tool that wrote them")
    assert "lead the references by 1 sample (0.0 ms)" in describe(Lag(-1, SOURCES, SOURCES, RATE),
                                                                   "X")


def test_a_lag_round_trips_through_its_dict() -> None:
    lag = Lag(-1105, ("vocals", "bass"), SOURCES, RATE)
    assert Lag.from_dict(lag.to_dict()) == lag
    for bad in (None, {}, {"samples": "x"}, [1, 2], {"samples": 1, "sources": [], "checked": []}):
        assert Lag.from_dict(bad) is None


def test_tiny_inputs_give_no_verdict() -> None:
    refs = torch.ones(4, 2, 50)
    assert source_lags(refs, refs, RATE, SOURCES) == [None] * 4


def test_the_check_is_fast_whatever_the_track_length() -> None:
    """Only a 2 s window per source is correlated: 20-40 ms of one core's time per track
    measured on a loaded 2-core machine, whatever the length; the bound leaves room for a busy
    CI (CPU time on one thread, the best of five: other processes barely change it)."""
    length = 60 * RATE
    gen = torch.Generator().manual_seed(0)
    refs = torch.randn(4, 2, length, generator=gen) * 0.1
    ests = torch.roll(refs, 1024, dims=-1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = detect_lag(refs, ests, RATE, SOURCES)
        best = min(_cpu_seconds(lambda: detect_lag(refs, ests, RATE, SOURCES)) for _ in range(5))
    finally:
        torch.set_num_threads(threads)
    assert found is not None and found.samples == 1024
    assert best < 0.15, best


def _cpu_seconds(call: Callable[[], object]) -> float:
    start = time.process_time()
    call()
    return time.process_time() - start


def test_fast_lengths_have_small_prime_factors_only() -> None:
    for n in (1, 97, 88201, 132301, 176399):
        size = alignment._fast_length(n)
        rest = size
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        assert size >= n and rest == 1
        assert all(not _smooth(m) for m in range(n, size)), n


def _smooth(m: int) -> bool:
    for p in (2, 3, 5, 7):
        while m % p == 0:
            m //= p
    return m == 1


@pytest.fixture(scope="module")
def musdb_excerpt() -> np.ndarray:
    """The 6 s MUSDB18 excerpt that stempeg ships, decoded with PyAV: (stream, channel, time),
    streams mixture, drums, bass, other, vocals (skipped where stempeg is not installed)."""
    import importlib.util

    import av

    spec = importlib.util.find_spec("stempeg")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("stempeg (which ships a MUSDB18 excerpt) is not installed")
    path = (Path(next(iter(spec.submodule_search_locations))) / "data"
            / "The Easton Ellises - Falcon 69.stem.mp4")
    if not path.is_file():
        pytest.skip(f"{path}: not in this stempeg")
    streams = []
    for index in range(5):
        with av.open(str(path)) as container:
            frames = container.decode(container.streams.audio[index])
            streams.append(np.concatenate([f.to_ndarray() for f in frames], axis=1))
    length = min(s.shape[-1] for s in streams)
    return np.stack([s[:, :length] for s in streams]).astype(np.float32)


def _masked(excerpt: np.ndarray, noise: float, seed: int = 0) -> torch.Tensor:
    """Estimates as a separation gives them: ratio masks of the true stems' power (plus
    ``noise`` times a random mask) applied to the mixture's STFT, and inverted."""
    mixture, stems = torch.from_numpy(excerpt[0]), torch.from_numpy(excerpt[1:])
    window = torch.hann_window(4096)
    spec = torch.stft(mixture, 4096, 1024, window=window, return_complex=True)
    power = torch.stft(stems.reshape(-1, stems.shape[-1]), 4096, 1024, window=window,
                       return_complex=True).abs().square().reshape(4, 2, *spec.shape[-2:])
    mask = power / power.sum(0).clamp_min(1e-12)
    mask = mask + noise * torch.rand(mask.shape, generator=torch.Generator().manual_seed(seed))
    mask = mask / mask.sum(0)
    out = torch.istft((mask * spec).reshape(-1, *spec.shape[-2:]), 4096, 1024, window=window,
                      length=stems.shape[-1])
    return out.reshape(stems.shape)


@pytest.mark.parametrize("lag", [0, 1024, 1105, 2112, -1024])
@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_real_music_separated_and_shifted(musdb_excerpt: np.ndarray, lag: int,
                                          noise: float) -> None:
    """On MUSDB18 audio (AAC, band-limited), with masked estimates, clean or noisy: the lag is
    found in drums, other and vocals (the bass line is too periodic to tell, and says nothing),
    and aligned estimates give none."""
    stems = ("drums", "bass", "other", "vocals")
    refs = torch.from_numpy(musdb_excerpt[1:])
    ests = torch.from_numpy(_shift(_masked(musdb_excerpt, noise).numpy(), lag))
    found = detect_lag(refs, ests, RATE, stems)
    if lag == 0:
        assert found is None
        assert detect_lag(refs, refs.sum(0, keepdim=True).expand_as(refs).contiguous(), RATE,
                          stems) is None  # the mixture as every estimate
        gen = torch.Generator().manual_seed(3)
        poor = torch.randn(refs.shape, generator=gen) * refs.std(-1, keepdim=True) + 0.1 * refs
        assert detect_lag(refs, poor, RATE, stems) is None
    else:
        assert found is not None and found.samples == lag
        assert {"drums", "other", "vocals"} <= set(found.sources)
        assert found.sources == found.checked  # "the estimates lag the references"
