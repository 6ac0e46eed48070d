"""Multichannel STFT and inverse STFT on complex tensors.

The transform follows the X-UMX/Open-Unmix front end (spec §1.1): a periodic Hann window of
length ``n_fft``, centred frames with reflect padding of ``n_fft // 2`` on both sides, no
normalisation, one-sided. ``num_frames = 1 + time // hop_length``. The inverse always takes the
original length, so a round trip returns exactly as many samples as went in.
"""

from __future__ import annotations

import torch
from torch import nn

from cumx_cli.engine.errors import ShapeError


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|`` as ``sqrt(re^2 + im^2)``, in the input's memory layout.

    This is Open-Unmix's own formula (its ``ComplexNorm``), and about four times faster on the
    CPU than ``torch.abs``, which calls ``hypot``. It underflows to 0 below about 1e-19 and its
    gradient at 0 is not finite, so it is for inference; training keeps ``torch.abs``.
    """
    out = spec.real.square()
    return out.addcmul_(spec.imag, spec.imag).sqrt_()


class STFT(nn.Module):
    """Waveforms to complex spectrograms and back.

    The window is always the periodic Hann window, made in the input's dtype and device (so a
    float64 input gets an exact float64 window); it is never stored in a checkpoint.

    Args:
        n_fft: FFT size and window length (a model's ``ModelConfig.n_fft``).
        hop_length: samples between frames (``ModelConfig.hop_length``).
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length

    def _window(self, like: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.n_fft, periodic=True, dtype=like.dtype, device=like.device)

    def min_length(self) -> int:
        """The shortest input the reflect padding accepts."""
        return self.n_fft // 2 + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Complex STFT.

        Shapes:
            waveform: (..., time), real
            returns:  (..., freq, frame), complex
        """
        if waveform.shape[-1] < self.min_length():
            raise ShapeError(
                f"the STFT needs at least {self.min_length()} samples, got {waveform.shape[-1]}"
            )
        lead = waveform.shape[:-1]
        spec = torch.stft(
            waveform.reshape(-1, waveform.shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self._window(waveform),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return spec.reshape(*lead, *spec.shape[-2:])

    def inverse(self, spec: torch.Tensor, length: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse STFT with the output cut or padded to ``length`` samples, written into
        ``out`` (and returned) if given: a (..., length) tensor of the result's dtype and device.

        Equal to ``torch.istft`` (same window, centring, envelope normalisation and length
        handling) up to float rounding. When the hop divides ``n_fft`` the overlap-add is done
        here as ``n_fft / hop`` shifted block sums on frames taken straight from a frame-major
        spectrogram (the layout ``torch.stft`` and the model produce), which avoids the transposed
        copy and the generic ``fold`` of ``torch.istft``; other hops use ``torch.istft``.

        Shapes:
            spec:    (..., freq, frame), complex
            returns: (..., time) with time == length, real
        """
        lead = spec.shape[:-2]
        if self.n_fft % self.hop_length:
            wave = self._torch_inverse(spec, length)
            return wave if out is None else out.copy_(wave)
        freqs, num_frames = spec.shape[-2:]
        if freqs != self.n_fft // 2 + 1:
            raise ShapeError(f"expected {self.n_fft // 2 + 1} frequency bins, got {freqs}")
        frames = torch.fft.irfft(spec.transpose(-1, -2).reshape(-1, num_frames, freqs),
                                 n=self.n_fft, dim=-1)  # (batch, frame, n_fft)
        frames.mul_(self._window(frames))
        overlap = self.n_fft // self.hop_length
        pieces = frames.view(frames.shape[0], num_frames, overlap, self.hop_length)
        summed = frames.new_zeros(frames.shape[0], num_frames + overlap - 1, self.hop_length)
        for k in range(overlap):
            summed[:, k : k + num_frames].add_(pieces[:, :, k])
        wave = summed.view(frames.shape[0], -1)
        start = self.n_fft // 2
        stop = min(wave.shape[-1], start + length)
        envelope = self._inverse_envelope(num_frames, frames)[start:stop]
        if out is not None and out.is_contiguous():  # the last pass writes straight into out
            rows = out.view(-1, length)
            torch.mul(wave[:, start:stop], envelope, out=rows[:, : stop - start])
            rows[:, stop - start :] = 0.0
            return out
        wave = wave[:, start:stop].mul_(envelope)
        if wave.shape[-1] < length:
            wave = torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
        wave = wave.reshape(*lead, length)
        return wave if out is None else out.copy_(wave)

    def _inverse_envelope(self, num_frames: int, like: torch.Tensor) -> torch.Tensor:
        """One over the overlap-added squared window (as torch.istft divides by it)."""
        key = (num_frames, like.dtype, like.device)
        cached = getattr(self, "_envelope_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        square = self._window(like).square().view(-1, self.hop_length)
        overlap = square.shape[0]
        env = like.new_zeros(num_frames + overlap - 1, self.hop_length)
        for k in range(overlap):
            env[k : k + num_frames] += square[k]
        env = env.flatten()
        start = self.n_fft // 2
        inner = env[start : start + self.hop_length * (num_frames - 1)]
        if inner.numel() and inner.abs().min() < 1e-11:
            raise ShapeError("the window overlap-add is zero somewhere: cannot invert this STFT")
        inv = torch.where(env.abs() > 1e-11, 1.0 / env, torch.zeros((), dtype=env.dtype))
        self._envelope_cache = (key, inv)
        return inv

    def _torch_inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        lead = spec.shape[:-2]
        wave = torch.istft(
            spec.reshape(-1, *spec.shape[-2:]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self._window(spec.real),
            center=True,
            normalized=False,
            onesided=True,
            length=length,
        )
        return wave.reshape(*lead, length)
