"""The batched Wiener/EM filter against a direct transcription of norbert's loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cumx_cli.engine.dsp import wiener as wiener_mod
from cumx_cli.engine.dsp.wiener import wiener


def reference_wiener(v: np.ndarray, x: np.ndarray, iterations: int, eps: float) -> np.ndarray:
    """norbert.wiener(use_softmask=False), written out with explicit frame loops.

    v: (frames, bins, channels, sources) magnitudes; x: (frames, bins, channels) complex.
    """
    y = v * np.exp(1j * np.angle(x[..., None]))
    max_abs = max(1.0, np.abs(x).max() / 10.0)
    x = x / max_abs
    y = y / max_abs
    frames, bins, channels = x.shape
    sources = y.shape[-1]
    for _ in range(iterations):
        vj = np.mean(np.abs(y) ** 2, axis=2)  # (frames, bins, sources)
        r = np.zeros((sources, bins, channels, channels), complex)
        for j in range(sources):
            weight = eps
            for t in range(frames):
                r[j] += y[t, :, :, j, None] * np.conj(y[t, :, None, :, j])
                weight = weight + vj[t, :, j]
            r[j] /= weight[:, None, None]
        out = np.zeros_like(y)
        for t in range(frames):
            cxx = np.sqrt(eps) * np.eye(channels)[None].repeat(bins, 0).astype(complex)
            for j in range(sources):
                cxx += vj[t, :, j, None, None] * r[j]
            inv = np.linalg.inv(cxx)
            for j in range(sources):
                gain = vj[t, :, j, None, None] * (r[j] @ inv)
                out[t, :, :, j] = np.einsum("fab,fb->fa", gain, x[t])
        y = out
    return y * max_abs


def _random_problem(seed: int, channels: int = 2, sources: int = 3, frames: int = 9, bins: int = 5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((frames, bins, channels)) + 1j * rng.standard_normal((frames, bins, channels))
    x *= 30  # exercise the max|x|/10 rescaling
    v = np.abs(rng.standard_normal((frames, bins, channels, sources))) * 20
    return v, x


def _to_canonical(v: np.ndarray, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mags = torch.from_numpy(v).permute(3, 2, 1, 0)[None]  # (1, source, channel, freq, frame)
    mix = torch.from_numpy(x).permute(2, 1, 0)[None]  # (1, channel, freq, frame)
    return mags, mix


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("niter", [1, 2])
@pytest.mark.parametrize("eps", [1e-10, np.finfo(np.float64).eps])
def test_matches_reference_loops(channels: int, niter: int, eps: float) -> None:
    v, x = _random_problem(0, channels=channels)
    expected = reference_wiener(v, x, niter, eps)
    mags, mix = _to_canonical(v, x)
    got = wiener(mags, mix, niter=niter, eps=eps)[0].permute(3, 2, 1, 0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_blocks_batches_and_dtypes_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [_to_canonical(*_random_problem(seed, frames=13)) for seed in range(3)]
    mags = torch.cat([m for m, _ in items]).float()
    mix = torch.cat([x for _, x in items]).to(torch.complex64)
    batched = wiener(mags, mix, niter=2, eps=1e-10)
    assert batched.dtype == torch.complex64
    for i in range(3):
        single = wiener(mags[i : i + 1], mix[i : i + 1], niter=2, eps=1e-10)
        torch.testing.assert_close(batched[i : i + 1], single)
    monkeypatch.setattr(wiener_mod, "BLOCK_FRAMES", 4)
    small_blocks = wiener_mod.expectation_maximization(
        wiener_mod.initial_estimates(mags, mix, softmask=False, eps=1e-10), mix, 2, 1e-10, block=4)
    whole = wiener_mod.expectation_maximization(
        wiener_mod.initial_estimates(mags, mix, softmask=False, eps=1e-10), mix, 2, 1e-10, block=64)
    torch.testing.assert_close(small_blocks, whole)


def test_softmask_and_residual_without_em_sum_to_the_mixture() -> None:
    mags, mix = _to_canonical(*_random_problem(1))
    y = wiener(mags, mix, niter=0, softmask=True)
    torch.testing.assert_close(y.sum(dim=1), mix, rtol=1e-6, atol=1e-6)
    y = wiener(mags, mix, niter=0, residual=True)
    assert y.shape[1] == mags.shape[1] + 1
    torch.testing.assert_close(y.sum(dim=1), mix, rtol=1e-9, atol=1e-9)


def test_em_estimates_sum_close_to_the_mixture() -> None:
    mags, mix = _to_canonical(*_random_problem(2))
    y = wiener(mags, mix, niter=1, eps=1e-10)
    err = (y.sum(dim=1) - mix).abs().max() / mix.abs().max()
    assert err < 1e-4


def test_silence_gives_zeros_not_nan() -> None:
    mags = torch.zeros(2, 4, 2, 33, 7)
    mix = torch.zeros(2, 2, 33, 7, dtype=torch.complex64)
    for eps in (1e-10, 2.220446049250313e-16):
        y = wiener(mags, mix, niter=1, eps=eps)
        assert torch.isfinite(y.real).all() and (y.abs() == 0).all()


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize(("softmask", "residual"), [(False, False), (True, False), (False, True),
                                                    (True, True)])
@pytest.mark.parametrize("niter", [1, 2])
def test_factored_first_iteration_equals_em_on_the_complex_estimates(
        channels: int, softmask: bool, residual: bool, niter: int) -> None:
    """``wiener`` computes the first EM statistics from real amplitudes and the mixture phasor;
    that must equal plain EM on the complex initial estimates (here formed explicitly),
    including bins where the mixture is exactly zero."""
    v, x = _random_problem(4, channels=channels, sources=3, frames=11, bins=6)
    x[2, 1, :] = 0  # a silent bin: its phasor is taken as 1
    x[5, 3, 0] = 0  # one channel silent only
    mags, mix = _to_canonical(v, x)
    eps = 1e-10
    got = wiener(mags, mix, niter=niter, softmask=softmask, residual=residual, eps=eps)
    scale = max(1.0, float(mix.abs().max()) / 10.0)
    init = wiener_mod.initial_estimates(mags if softmask else mags / scale, mix / scale,
                                        softmask=softmask, eps=eps)
    if residual:
        init = torch.cat([init, (mix / scale - init.sum(dim=1)).unsqueeze(1)], dim=1)
    expected = wiener_mod.expectation_maximization(init, mix / scale, niter, eps) * scale
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_cross_phasor_equals_the_product_of_phasors() -> None:
    """``u_i conj(u_k)`` from one complex product over ``|x_i| |x_k|``, and from the two
    phasors wherever that product is zero, too small to keep its precision, or infinite."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 7, 5, dtype=torch.complex64, generator=gen) * 30
    mag = x.abs()

    def expected(x: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        return wiener_mod._phasor(x[:, 0], mag[:, 0]) * wiener_mod._phasor(x[:, 1], mag[:, 1]).conj()

    re, im = wiener_mod._cross_phasor(x[:, 0], x[:, 1], mag[:, 0], mag[:, 1])
    assert re.is_contiguous() and im.is_contiguous()
    torch.testing.assert_close(torch.complex(re, im), expected(x, mag))
    silent = x.clone()
    silent[1, 0, 3, 2] = 0  # one channel: there u_0 = 1, so the cross phasor is conj(u_1)
    tiny = x.clone()
    tiny[1, :, 3, 2] = 1e-20 * (1 + 1j)  # |x_0 x_1| = 4e-40: a float32 subnormal
    for y in (silent, tiny):
        y_mag = y.abs()
        re, im = wiener_mod._cross_phasor(y[:, 0], y[:, 1], y_mag[:, 0], y_mag[:, 1])
        torch.testing.assert_close(torch.complex(re, im), expected(y, y_mag))
    want = x[1, 1, 3, 2].conj() / x[1, 1, 3, 2].abs()
    re, im = wiener_mod._cross_phasor(silent[:, 0], silent[:, 1], silent.abs()[:, 0],
                                      silent.abs()[:, 1])
    torch.testing.assert_close(torch.complex(re, im)[1, 3, 2], want)


@pytest.mark.parametrize("channels", [2, 3])
def test_blocks_with_and_without_silent_bins_equal_em_on_the_complex_estimates(
        monkeypatch: pytest.MonkeyPatch, channels: int) -> None:
    """Blocks of 4 frames, one with an exactly silent bin (its cross phasors come from the
    phasors) and the others without (one product over the magnitudes): both equal EM on the
    complex initial estimates."""
    monkeypatch.setattr(wiener_mod, "BLOCK_FRAMES", 4)
    v, x = _random_problem(10, channels=channels, sources=3, frames=13, bins=6)
    x[5, 2, 0] = 0  # frame 5: the second block
    mags, mix = _to_canonical(v, x)
    got = wiener(mags, mix, niter=1, eps=1e-10)
    scale = max(1.0, float(mix.abs().max()) / 10.0)
    init = wiener_mod.initial_estimates(mags / scale, mix / scale, softmask=False, eps=1e-10)
    expected = wiener_mod.expectation_maximization(init, mix / scale, 1, 1e-10) * scale
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_output_is_frame_major_like_the_stft() -> None:
    """The inverse STFT reads the estimates without a transposing copy."""
    mags, mix = _to_canonical(*_random_problem(5))
    y = wiener(mags, mix, niter=1)
    assert y.stride(-2) == 1 and y.stride(-1) == y.shape[-2]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("niter", [1, 2])
def test_windows_are_filtered_as_separate_tracks(channels: int, niter: int) -> None:
    """openunmix's ``wiener_win_len``: each window of frames gets its own scale and covariances
    (checked against the reference loops run on each window alone), the last one shorter."""
    v, x = _random_problem(6, channels=channels, frames=23)
    x[14:21] *= 0.05  # a quiet window: its own max|x| scale differs from the others'
    mags, mix = _to_canonical(v, x)
    got = wiener(mags, mix, niter=niter, eps=1e-10, window=7)[0].permute(3, 2, 1, 0).numpy()
    for start in range(0, 23, 7):  # windows 7, 7, 7 and 2 frames long
        part = slice(start, start + 7)
        expected = reference_wiener(v[part], x[part], niter, 1e-10)
        np.testing.assert_allclose(got[part], expected, rtol=1e-7, atol=1e-9)
    if channels == 2:  # (in mono every R_j is 1, so the windows change nothing there)
        whole = wiener(mags, mix, niter=niter, eps=1e-10)[0].permute(3, 2, 1, 0).numpy()
        assert not np.allclose(got, whole, rtol=1e-3)  # the windows do change the result


@pytest.mark.parametrize(("softmask", "residual"), [(True, False), (False, True)])
def test_windows_with_softmask_and_residual_equal_per_window_calls(softmask: bool,
                                                                    residual: bool) -> None:
    items = [_to_canonical(*_random_problem(seed, frames=20)) for seed in (7, 8)]
    mags = torch.cat([m for m, _ in items]).float()
    mix = torch.cat([x for _, x in items]).to(torch.complex64)
    got = wiener(mags, mix, niter=1, softmask=softmask, residual=residual, window=8)
    assert got.stride(-2) == 1  # still frame-major
    for start in (0, 8, 16):
        part = wiener(mags[..., start : start + 8], mix[..., start : start + 8], niter=1,
                      softmask=softmask, residual=residual)
        torch.testing.assert_close(got[..., start : start + 8], part)


def test_window_longer_than_the_input_or_without_em_changes_nothing() -> None:
    mags, mix = _to_canonical(*_random_problem(9, frames=12))
    torch.testing.assert_close(wiener(mags, mix, window=12), wiener(mags, mix, window=0))
    torch.testing.assert_close(wiener(mags, mix, window=500), wiener(mags, mix))
    torch.testing.assert_close(wiener(mags, mix, niter=0, window=5), wiener(mags, mix, niter=0))
    with pytest.raises(ValueError, match="window"):
        wiener(mags, mix, window=-1)


def test_windows_through_a_runner_in_any_order_give_the_same_estimates() -> None:
    """``run`` gets every window's first frame once; each window writes its own frames only,
    so running them in reverse (or side by side) changes nothing."""
    mags, mix = _to_canonical(*_random_problem(11, frames=23))
    seen: list[int] = []

    def reverse(fn, starts):  # type: ignore[no-untyped-def]
        seen.extend(starts)
        return [fn(start) for start in reversed(list(starts))][::-1]

    got = wiener(mags, mix, niter=1, window=7, run=reverse)
    assert seen == [0, 7, 14, 21]
    assert torch.equal(got, wiener(mags, mix, niter=1, window=7))


@pytest.mark.parametrize(("softmask", "residual"), [(False, False), (True, True)])
def test_one_window_through_a_runner_is_split_in_two_halves(
        monkeypatch: pytest.MonkeyPatch, softmask: bool, residual: bool) -> None:
    """A single window's first iteration goes to the runner as two halves of its frames
    (statistics, then estimates); run in reverse order they give the same estimates to
    rounding (the halves' sums are added in another order)."""
    monkeypatch.setattr(wiener_mod, "BLOCK_FRAMES", 4)
    items = [_to_canonical(*_random_problem(seed, frames=19)) for seed in (12, 13)]
    mags = torch.cat([m for m, _ in items])
    mix = torch.cat([x for _, x in items])
    calls: list[list[range]] = []

    def reverse(fn, parts):  # type: ignore[no-untyped-def]
        parts = list(parts)
        calls.append(parts)
        return [fn(part) for part in reversed(parts)][::-1]

    got = wiener(mags, mix, niter=1, softmask=softmask, residual=residual, run=reverse)
    assert [[list(part) for part in parts] for parts in calls] == [[[0, 4, 8], [12, 16]]] * 2
    expected = wiener(mags, mix, niter=1, softmask=softmask, residual=residual)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
