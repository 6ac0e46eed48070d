"""STFT/iSTFT: the spec's front end (periodic Hann, centred, reflect) and exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.errors import ShapeError


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("length", [2049, 4096, 10_001, 44_100 + 37])
def test_round_trip_keeps_length_and_samples(channels: int, length: int) -> None:
    stft = STFT(4096, 1024)
    x = torch.randn(3, channels, length)
    spec = stft(x)
    assert spec.shape == (3, channels, 2049, 1 + length // 1024)
    y = stft.inverse(spec, length)
    assert y.shape == x.shape
    assert torch.sqrt(torch.mean((y - x) ** 2)) < 1e-6


def test_one_frame_equals_the_textbook_dft() -> None:
    """Frame k is the DFT of the reflect-padded signal at k*hop times a periodic Hann window."""
    n_fft, hop = 256, 64
    stft = STFT(n_fft, hop)
    x = np.random.default_rng(0).standard_normal(1000)
    spec = stft(torch.from_numpy(x)).numpy()
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    for k in (0, 3, spec.shape[-1] - 1):
        frame = padded[k * hop : k * hop + n_fft] * window
        expected = np.array([np.sum(frame * np.exp(-2j * np.pi * f * np.arange(n_fft) / n_fft))
                             for f in range(n_fft // 2 + 1)])
        np.testing.assert_allclose(spec[:, k], expected, rtol=1e-9, atol=1e-9)


def test_too_short_input_is_a_shape_error() -> None:
    with pytest.raises(ShapeError, match="at least 2049 samples"):
        STFT()(torch.zeros(1, 2, 100))
