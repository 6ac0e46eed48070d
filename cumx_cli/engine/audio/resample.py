"""Exact block-wise resampling.

:class:`StreamResampler` feeds a signal through torchaudio's windowed-sinc resampler in blocks,
with enough context on both sides of each block that the concatenated output is identical to
resampling the whole signal at once (the same kernel, the same zero padding at the true ends).
That keeps memory flat for arbitrarily long inputs.
"""

from __future__ import annotations

import math

import torch

#: torchaudio's defaults, written out because the context computation depends on them.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


def resample(waveform: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Resample a whole signal (torchaudio's sinc interpolation with a Hann window).

    Shapes:
        waveform: (..., time)
        returns:  (..., ceil(time * new / orig))
    """
    if orig == new:
        return waveform
    # Imported here: most runs never resample (the input is at the model's rate), and the
    # import costs about 20 ms of every start.
    import torchaudio.functional as AF  # noqa: N812

    return AF.resample(waveform, orig, new, lowpass_filter_width=LOWPASS_FILTER_WIDTH, rolloff=ROLLOFF)


class StreamResampler:
    """Resample a signal pushed in arbitrary blocks; output equals :func:`resample` of the whole.

    torchaudio reduces the rates by their gcd to ``o -> n`` and produces ``n`` outputs per ``o``
    inputs from a kernel reaching ``width`` inputs to the left and ``width + o`` to the right. Each
    block is therefore resampled with ``pad >= width`` inputs (a multiple of ``o``) of context on
    both sides, and only the outputs whose whole kernel lies in the block plus context are kept.
    """

    def __init__(self, orig: int, new: int) -> None:
        self.orig, self.new = orig, new
        g = math.gcd(orig, new)
        self.o, self.n = orig // g, new // g
        width = math.ceil(LOWPASS_FILTER_WIDTH * self.o / (min(self.o, self.n) * ROLLOFF))
        self.pad = math.ceil(width / self.o) * self.o
        self.buf: torch.Tensor | None = None
        self.buf_start = 0  # absolute input index of buf[..., 0]
        self.done = 0  # inputs whose outputs have been emitted (a multiple of o until the end)
        self.total = 0

    def push(self, block: torch.Tensor, final: bool = False) -> torch.Tensor:
        """Add ``block`` and return every output sample that can now be computed exactly.

        Shapes:
            block:   (..., time)
            returns: (..., n)
        """
        if self.orig == self.new:
            return block
        self.buf = block if self.buf is None else torch.cat([self.buf, block], dim=-1)
        self.total += block.shape[-1]
        if final:
            end = self.total
        else:
            end = ((self.total - self.pad) // self.o) * self.o
            if end <= self.done:
                return block.new_zeros(*block.shape[:-1], 0)
        start = self.done
        left = min(self.pad, start - self.buf_start)
        seg = self.buf[..., start - left - self.buf_start : min(end + self.pad, self.total) - self.buf_start]
        out = resample(seg, self.orig, self.new)
        first = (left // self.o) * self.n
        if final:
            count = math.ceil(self.n * self.total / self.o) - (start // self.o) * self.n
        else:
            count = ((end - start) // self.o) * self.n
        self.done = end
        keep_from = max(self.buf_start, end - self.pad)
        self.buf = self.buf[..., keep_from - self.buf_start :]
        self.buf_start = keep_from
        return out[..., first : first + count]


def resampled_length(length: int, orig: int, new: int) -> int:
    """Length of :func:`resample`'s output for ``length`` input samples."""
    if orig == new:
        return length
    g = math.gcd(orig, new)
    return math.ceil((new // g) * length / (orig // g))


def duration_length(length: int, orig: int, new: int) -> int:
    """Samples at rate ``new`` for the duration of ``length`` samples at ``orig``, rounded to
    the nearest sample: what a stem written at another rate than its input's holds.

    :func:`resampled_length` rounds up (a resampler's output keeps every input sample's
    contribution), so going to the model's rate and back can add a sample or two; the stems are
    cut back to this.
    """
    if orig == new:
        return length
    return (2 * length * new + orig) // (2 * orig)
