"""STFT/iSTFT: the spec's front end (periodic Hann, centred, reflect) and exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cumx_cli.engine.dsp.stft import STFT, magnitude
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
        STFT(4096, 1024)(torch.zeros(1, 2, 100))


@pytest.mark.parametrize(("n_fft", "hop"), [(4096, 1024), (64, 16), (32, 8), (30, 10), (32, 12)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.filterwarnings("ignore:The length of signal is shorter:UserWarning")  # torch.istft's own
def test_inverse_equals_torch_istft(n_fft: int, hop: int, dtype: torch.dtype) -> None:
    """The block overlap-add inverse equals torch.istft: any length asked for (shorter, equal,
    longer: zero-padded), frame-major or freq-major input, batched lead dimensions."""
    stft = STFT(n_fft, hop)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for length in sorted({stft.min_length(), max(stft.min_length(), 1000), 4097, 12_345}):
        spec = stft(torch.randn(2, 3, length, dtype=dtype))
        for want in (length, length - 3, length + 50):
            expected = torch.istft(spec.reshape(-1, *spec.shape[-2:]), n_fft, hop,
                                   window=torch.hann_window(n_fft, dtype=dtype), center=True,
                                   length=want).reshape(2, 3, want)
            for layout in (spec, spec.contiguous()):
                torch.testing.assert_close(stft.inverse(layout, want), expected, rtol=0, atol=tol)
            # written into a given tensor: a contiguous one (the last pass writes there), a
            # strided view (a copy), both filled completely, also the zero-padded tail
            whole = torch.full((2, 2, 3, want), float("nan"), dtype=dtype)
            for out in (whole[1], whole[:, 0]):
                assert stft.inverse(spec, want, out=out) is out
                torch.testing.assert_close(out, expected, rtol=0, atol=tol)


def test_inverse_gradient_equals_torch_istft() -> None:
    stft = STFT(32, 8)
    spec = torch.randn(2, 17, 9, dtype=torch.complex128)
    ours, ref = spec.clone().requires_grad_(), spec.clone().requires_grad_()
    stft.inverse(ours, 70).square().sum().backward()
    torch.istft(ref, 32, 8, window=torch.hann_window(32, dtype=torch.float64), center=True,
                length=70).square().sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad)


def test_magnitude_equals_abs() -> None:
    spec = STFT(64, 16)(torch.randn(2, 3000))
    torch.testing.assert_close(magnitude(spec), spec.abs())
    assert magnitude(spec).stride() == spec.stride()
