"""BSSEval v4 in torch against museval's own code (run on short signals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cumx_cli.engine.errors import ShapeError
from cumx_cli.engine.evaluation.bsseval import (
    SilentSourceError,
    bss_eval_v4,
    lagged_correlations,
    num_frames,
    solve_block_toeplitz,
    solve_gram,
)
from cumx_cli.engine.evaluation.bsseval import _active as bsseval_active
from cumx_cli.engine.evaluation.bsseval import _silent_frames as bsseval_silent_frames
from tests.synthetic_musdb import estimates, museval_metrics, sources

METRICS = museval_metrics()  # skips this module when museval is not installed


def _both(refs: np.ndarray, ests: np.ndarray, window: int, hop: int, taps: int
          ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """museval's (SDR, ISR, SIR, SAR) and cumx's, each (source, frame)."""
    expected = METRICS.bss_eval(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), window=window,
                                hop=hop, filters_len=taps, framewise_filters=False,
                                bsseval_sources_version=False)[:4]
    got = bss_eval_v4(torch.from_numpy(refs), torch.from_numpy(ests), window=window, hop=hop,
                      filters_len=taps)
    return expected, (got.sdr.numpy(), got.isr.numpy(), got.sir.numpy(), got.sar.numpy())


def _assert_same(expected: tuple[np.ndarray, ...], got: tuple[np.ndarray, ...]) -> None:
    for name, a, b in zip(("SDR", "ISR", "SIR", "SAR"), expected, got, strict=True):
        assert a.shape == b.shape, name
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: NaN frames differ"
        assert np.allclose(a, b, atol=1e-6, rtol=0, equal_nan=True), (name, np.nanmax(abs(a - b)))
        for j in range(a.shape[0]):
            if not np.isnan(a[j]).all():
                assert abs(np.nanmedian(a[j]) - np.nanmedian(b[j])) < 0.01, (name, j)


@pytest.mark.slow
def test_museval_settings_with_silent_passages_good_and_poor_estimates() -> None:
    """The paper's settings: 4 stereo sources, 1 s frames, 512 taps; silence in a reference
    (frame 1) and in an estimate (frame 2) make those frames NaN for every source."""
    rate = 44100
    refs = sources(4, 2, int(3.4 * rate))
    ests = estimates(refs)
    refs[2, :, rate : 2 * rate] = 0.0
    ests[1, :, 2 * rate : 3 * rate] = 0.0
    ests[3, :, 100:rate] = 0.0  # silent for most of frame 0 only: not a silent frame
    expected, got = _both(refs, ests, rate, rate, 512)
    _assert_same(expected, got)
    assert np.isnan(got[0][:, 1]).all() and np.isnan(got[0][:, 2]).all()
    assert not np.isnan(got[0][:, 0]).any()
    # good estimates (even sources) score far above poor ones (odd sources)
    assert np.nanmedian(got[0][0]) > np.nanmedian(got[0][1]) + 10


@pytest.mark.parametrize(("num_sources", "num_channels", "length", "window", "hop"), [
    (2, 1, 20000, 4000, 4000),    # mono, two sources
    (3, 2, 20011, 4000, 3000),    # overlapping frames, ragged end (dropped, as museval does)
    (2, 2, 3000, 4000, 4000),     # shorter than one window: one frame, the whole signal
    (2, 2, 2000, 40, 30),         # frames shorter than the filters, overlapping
])
def test_shapes_and_framing_match_museval(num_sources: int, num_channels: int, length: int,
                                          window: int, hop: int) -> None:
    refs = sources(num_sources, num_channels, length, seed=3)
    ests = estimates(refs, seed=4)
    expected, got = _both(refs, ests, window, hop, 64)
    assert got[0].shape == (num_sources, num_frames(length, window, hop))
    _assert_same(expected, got)


def test_lagged_correlations_equal_direct_sums() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 40000, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 40000, dtype=torch.float64, generator=gen)
    got = lagged_correlations(a, b, 5)
    for i in range(2):
        for j in range(3):
            for k in range(-5, 6):
                x = a[i, max(0, -k) : 40000 - max(0, k)]
                y = b[j, max(0, k) : 40000 + min(0, k)]
                assert torch.isclose(got[i, j, k + 5], (x * y).sum(), rtol=1e-10)


def test_perfect_estimate_scores_high() -> None:
    refs = torch.from_numpy(sources(2, 2, 20000))
    ests = refs + 1e-6 * torch.randn(refs.shape, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(0))
    got = bss_eval_v4(refs, ests, window=10000, hop=10000, filters_len=32)
    assert (got.sdr > 60).all()


def test_whole_silent_source_and_bad_shapes_are_refused() -> None:
    refs = torch.from_numpy(sources(2, 2, 5000))
    silent = refs.clone()
    silent[1] = 0
    with pytest.raises(SilentSourceError) as info:
        bss_eval_v4(silent, refs, window=1000, hop=1000, filters_len=16)
    assert (info.value.kind, info.value.index) == ("reference", 1)
    with pytest.raises(SilentSourceError):
        bss_eval_v4(refs, silent, window=1000, hop=1000, filters_len=16)
    with pytest.raises(ShapeError):
        bss_eval_v4(refs, refs[..., :-1], window=1000, hop=1000, filters_len=16)


def test_rank_deficient_references_still_match_museval() -> None:
    """A reference whose two channels are identical makes the Gram matrix of delayed
    references singular up to eps: the Cholesky solve must hand over to LU (or agree with it)
    and the scores still equal museval's."""
    refs = sources(3, 2, 20000, seed=5)
    refs[1, 1] = refs[1, 0]  # a mono source panned centre
    refs[2, 1] = 0.5 * refs[2, 0]
    ests = estimates(refs, seed=6)
    expected, got = _both(refs, ests, 4000, 4000, 64)
    _assert_same(expected, got)


def test_solve_gram_equals_lu_and_falls_back_when_indefinite() -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in ((1300, 1400), (3, 700, 720)):  # 1300 is not a multiple of the block size
        a = torch.randn(*shape, dtype=torch.float64, generator=gen)
        gram = a @ a.mT + 1e-12 * torch.eye(shape[-2], dtype=torch.float64)
        rhs = torch.randn(*shape[:-1], 5, dtype=torch.float64, generator=gen)
        torch.testing.assert_close(solve_gram(gram, rhs), torch.linalg.solve(gram, rhs),
                                   rtol=1e-8, atol=1e-10)
    sym = torch.randn(600, 600, dtype=torch.float64, generator=gen)
    sym = sym + sym.mT  # symmetric but indefinite: no Cholesky factor exists
    rhs = torch.randn(600, 3, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(solve_gram(sym, rhs), torch.linalg.solve(sym, rhs))


def test_solve_gram_replaces_an_lu_solution_that_does_not_solve_the_system(monkeypatch) -> None:
    """On a numerically singular Gram matrix LU may report no zero pivot and return a finite
    solution with huge components along the null space (Intel MKL with one thread did, on the
    rank-deficient references above). That solution fails the residual check, and the
    least-squares one is used: it solves the (consistent) system."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, 40, 20, dtype=torch.float64, generator=gen)
    gram = a @ a.mT  # rank 20 of 40: no Cholesky factor of gram + eps I
    rhs = gram @ torch.randn(2, 40, 3, dtype=torch.float64, generator=gen)
    null = torch.linalg.svd(gram[1]).U[:, -1:]  # gram[1] @ null is about 0
    real_solve_ex = torch.linalg.solve_ex

    def garbage_for_item_1(matrix: torch.Tensor, target: torch.Tensor):  # type: ignore[no-untyped-def]
        solved, info = real_solve_ex(matrix, target)
        solved[1] += 1e24 * null  # what the faulty LU gave: info 0, entries of 1e24
        return solved, torch.zeros_like(info)

    monkeypatch.setattr(torch.linalg, "solve_ex", garbage_for_item_1)
    solved = solve_gram(gram, rhs)
    assert float(solved.abs().max()) < 1e3
    torch.testing.assert_close(gram @ solved, rhs, rtol=0, atol=1e-8)
    torch.testing.assert_close(solved[1], torch.linalg.lstsq(gram[1], rhs[1], driver="gelsd").solution)


def _block_toeplitz(blocks: np.ndarray) -> np.ndarray:
    """The dense matrix whose block (m, n) is blocks[m - n] (its transpose above the diagonal),
    built entry by entry."""
    taps, c, _ = blocks.shape
    dense = np.zeros((taps * c, taps * c))
    for m in range(taps):
        for n in range(taps):
            block = blocks[m - n] if m >= n else blocks[n - m].T
            dense[m * c : (m + 1) * c, n * c : (n + 1) * c] = block
    return dense


def test_block_levinson_equals_the_dense_solve_and_gives_up_when_indefinite() -> None:
    """The Toeplitz recursion against numpy's dense solve of the same matrix (plus eps I), for
    the correlations of a 3-channel signal (positive definite), batched and not; and ``None``
    for a symmetric block-Toeplitz matrix that is not positive definite."""
    rng = np.random.default_rng(0)
    taps, c = 40, 3
    signal = rng.standard_normal((c, 5000))
    signal[1] += 0.9 * np.roll(signal[0], 3)  # correlated channels, at a delay
    blocks = np.stack([signal[:, : 5000 - k] @ signal[:, k:].T for k in range(taps)])
    rhs = rng.standard_normal((taps, c, 4))
    dense = _block_toeplitz(blocks) + np.finfo(np.float64).eps * np.eye(taps * c)
    expected = np.linalg.solve(dense, rhs.reshape(taps * c, 4)).reshape(taps, c, 4)
    got = solve_block_toeplitz(blocks, rhs)
    assert got is not None
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    batched = solve_block_toeplitz(np.stack([blocks, 2 * blocks]), np.stack([rhs, rhs]))
    assert batched is not None
    np.testing.assert_allclose(batched[0], expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batched[1], expected / 2, rtol=1e-9, atol=1e-12)
    indefinite = blocks.copy()
    indefinite[1] = 2 * blocks[0]  # |R(1)| > R(0): no correlation sequence, not definite
    assert np.linalg.eigvalsh(_block_toeplitz(indefinite)).min() < 0
    assert solve_block_toeplitz(indefinite, rhs) is None


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_silence_test_is_museval_float64_channel_sum(channels: int, dtype: torch.dtype) -> None:
    # museval: a source is silent at a sample when the float64 sum of its channels is zero;
    # frames with a silent source are NaN for all
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((3, channels, 4000)).astype(np.float32)
    x[0, :, 1000:2500] = 0  # silent through frame 1, and part of 2
    if channels > 1:
        x[1, -1, 2000:3100] = -x[1, :-1, 2000:3100].sum(axis=0)  # cancels exactly: silent
    if channels > 2:  # 1 + 1e-8 - 1: zero when summed in float32, not in float64
        x[2, :, 3600] = (1.0, 1e-8, -1.0)
    signal = torch.from_numpy(x).to(dtype)
    museval_silent = x.astype(np.float64).sum(axis=1) == 0  # (source, time)
    active = bsseval_active(signal)
    assert np.array_equal(active.numpy() == 0, museval_silent)
    frames = bsseval_silent_frames(active, 1000, 500, num_frames(4000, 1000, 500))
    expected = [museval_silent[:, t * 500 : t * 500 + 1000].all(axis=1).any()
                for t in range(num_frames(4000, 1000, 500))]
    assert frames.tolist() == expected and any(expected) and not all(expected)
