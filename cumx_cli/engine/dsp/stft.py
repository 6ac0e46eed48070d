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


class STFT(nn.Module):
    """Waveforms to complex spectrograms and back.

    The window is always the periodic Hann window, made in the input's dtype and device (so a
    float64 input gets an exact float64 window); it is never stored in a checkpoint.
    """

    def __init__(self, n_fft: int = 4096, hop_length: int = 1024) -> None:
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

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse STFT with the output cut or padded to ``length`` samples.

        Shapes:
            spec:    (..., freq, frame), complex
            returns: (..., time) with time == length, real
        """
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
