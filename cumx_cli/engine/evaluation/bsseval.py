"""BSSEval v4 in torch: museval's definitions, batched over sources and frames.

This is the scorer behind the paper's numbers (museval ``eval_mus_track``: ``bss_eval`` with
``framewise_filters=False``, ``bsseval_sources_version=False``, i.e. the *images* variant of
BSSEval v4 with time-invariant distortion filters), rewritten so that each step is one batched
tensor operation instead of Python loops over sources, channels and frames:

1. The lagged correlations of every (reference, reference) and (reference, estimate) channel
   pair, for lags up to ``filters_len - 1``, over the whole signal. museval takes one FFT of the
   whole padded signal per pair; here the signal is cut into blocks, and the block spectra are
   multiplied and summed over blocks with one batched matrix product per frequency (the
   overlap-save idea), which needs far less FFT work for 512 lags.
2. The distortion filters, computed once for the whole signal: one linear solve with the
   reference Gram matrix ``G`` (every source, channel and delay) for all estimates at once, and
   one small batched solve per source for the spatial-distortion filters. ``G + eps * I`` with
   ``eps`` the float64 machine epsilon, as museval does. ``G`` is block Toeplitz (museval builds
   it from ``scipy.linalg.toeplitz`` blocks), so the solves are block Levinson recursions, in
   numpy on the CPU, with the dense solve kept for matrices the recursion finds indefinite.
3. Per frame, the frame's references are filtered (FFT convolution, full length
   ``frame + filters_len - 1``, exactly like museval's ``_project``), and the four energy
   ratios are computed from the projections.

Everything runs in float64, on any device torch has (CUDA when the caller asks for it), except
the Levinson recursions of step 2, which run in numpy on matrices of a few hundred kB.
A frame in which any reference or any estimate is silent (the channel sum is zero at every
sample, museval's test) is NaN for every source, and a zero denominator gives ``+inf``, as in
museval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.shapes import check_shape

#: float64 machine epsilon: museval's regulariser on the diagonal of the Gram matrix.
EPS = float(torch.finfo(torch.float64).eps)
#: FFT size of the blocks used for the lagged correlations.
_BLOCK_FFT = 16384
#: Blocks whose spectra are held in memory at once while correlating (small: the products
#: stay in cache; 8 was fastest on 2 CPU cores, twice as fast as 64).
_BLOCKS_PER_GROUP = 8


class SilentSourceError(EvaluationError):
    """A whole reference or estimate is silent: BSSEval is undefined (museval refuses it too)."""

    def __init__(self, kind: str, index: int) -> None:
        self.kind = kind
        self.index = index
        super().__init__(f"{kind} source {index} is silent over the whole signal; BSSEval "
                         "needs every reference and estimate to hold some signal")


@dataclass(frozen=True)
class FrameScores:
    """BSSEval v4 scores of one track, per source and frame (float64, on the CPU).

    Shapes:
        sdr, isr, sir, sar: (source, frame)
    """

    sdr: torch.Tensor
    isr: torch.Tensor
    sir: torch.Tensor
    sar: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"SDR": self.sdr, "ISR": self.isr, "SIR": self.sir, "SAR": self.sar}


def num_frames(length: int, window: int, hop: int) -> int:
    """Frames museval evaluates: whole windows only, or one frame when the signal is shorter."""
    if window < length:
        return (length - window + hop) // hop
    return 1


def bss_eval_v4(references: torch.Tensor, estimates: torch.Tensor, *, window: int, hop: int,
                filters_len: int, device: torch.device | None = None,
                frames_per_batch: int = 4) -> FrameScores:
    """Framewise SDR, ISR, SIR and SAR of estimates against references (BSSEval v4 images).

    Args:
        references: the true sources (their spatial images).
        estimates: the estimates, in the same source order and of the same length.
        window: frame length in samples (``EvalConfig.window_seconds`` times the rate).
        hop: frame hop in samples (``EvalConfig.hop_seconds`` times the rate).
        filters_len: taps of the distortion filters (``EvalConfig.filters_len``).
        device: where to compute; default: where ``references`` is.
        frames_per_batch: frames projected at once (bounds the memory of step 3).

    Returns:
        The scores; frames where any reference or estimate is silent are NaN.

    Raises:
        ShapeError: the inputs differ in shape or are not (source, channel, time).
        SilentSourceError: a whole reference or estimate is silent.

    Shapes:
        references: (source, channel, time)
        estimates:  (source, channel, time)
    """
    check_shape(references, ("source", "channel", "time"))
    check_shape(estimates, ("source", "channel", "time"), source=references.shape[0],
                channel=references.shape[1], time=references.shape[2])
    device = device or references.device
    num_sources, num_channels, length = references.shape
    # museval's silence test, once per sample: where the channel sum is not zero.
    active_ref, active_est = _active(references), _active(estimates)
    for kind, active in (("reference", active_ref), ("estimate", active_est)):
        silent = active.amax(dim=-1) == 0
        if bool(silent.any()):
            raise SilentSourceError(kind, int(silent.nonzero()[0]))
    count = num_frames(length, window, hop)
    frame_len = min(window, length)
    nan_frames = (_silent_frames(active_ref, frame_len, hop, count)
                  | _silent_frames(active_est, frame_len, hop, count)).cpu()
    sc = num_sources * num_channels
    # One float64 copy of the inputs, already padded for the correlations of step 1; the
    # references and estimates of steps 2 and 3 are views of it.
    padded = _padded_for_blocks([references.reshape(sc, length), estimates.reshape(sc, length)],
                                filters_len - 1, dtype=torch.float64, device=device)
    signals = padded[:, filters_len - 1 : filters_len - 1 + length]
    ref = signals[:sc].view(num_sources, num_channels, length)
    est = signals[sc:].view(num_sources, num_channels, length)
    filters_all, filters_own = _filters_from_padded(padded, num_sources, num_channels, length,
                                                    filters_len)
    del padded, signals  # the views ref and est keep the buffer alive
    scores = _framewise_scores(ref, est, filters_all, filters_own, window, hop,
                               frames_per_batch)
    return FrameScores(*(m.masked_fill(nan_frames, float("nan")) for m in scores.as_dict().values()))


def _active(x: torch.Tensor) -> torch.Tensor:
    """Where a source is not silent by museval's test: the sum of its channels, in float64 as
    museval sums them, is not zero. (source, channel, time) -> (source, time) uint8 (0 or 1:
    torch reduces uint8 several times faster than bool).

    One or two float32 or float64 channels are summed in their own precision: ``a + b`` is zero
    exactly when ``b == -a`` (gradual underflow), in every precision, so the test is the same.
    """
    exact = x.shape[-2] <= 2 and x.dtype in (torch.float32, torch.float64)
    total = x.sum(dim=-2) if exact else x.sum(dim=-2, dtype=torch.float64)
    return (total != 0).view(torch.uint8)


def _silent_frames(active: torch.Tensor, frame_len: int, hop: int, count: int) -> torch.Tensor:
    """The frames in which any source is silent (museval scores them NaN for every source).
    (source, time) uint8 from :func:`_active` -> (frame,) bool."""
    return (active.unfold(-1, frame_len, hop)[:, :count].amax(dim=-1) == 0).any(dim=0)


def lagged_correlations(a: torch.Tensor, b: torch.Tensor, max_lag: int) -> torch.Tensor:
    """``out[i, j, max_lag + k] = sum_t a[i, t] * b[j, t + k]`` for ``|k| <= max_lag``.

    Signals are taken as zero outside ``[0, time)``. Computed block-wise: each block of ``a``
    (masked to its own samples) is correlated with the block of ``b`` extended by ``max_lag``
    on each side, and the block cross-spectra are summed before one inverse FFT per pair.

    Shapes:
        a: (i, time), b: (j, time), same time; returns (i, j, 2 * max_lag + 1)
    """
    padded = _padded_for_blocks([a, b], max_lag)
    return _correlate_padded(padded, a.shape[0], a.shape[-1], max_lag)[:, a.shape[0] :]


def _block_geometry(length: int, max_lag: int) -> tuple[int, int, int]:
    """FFT size, hop and count of the correlation blocks."""
    size = max(_BLOCK_FFT, 1 << math.ceil(math.log2(8 * max_lag + 1)))
    step = size - 2 * max_lag
    return size, step, -(-length // step)


def _padded_for_blocks(groups: Sequence[torch.Tensor], max_lag: int,
                       dtype: torch.dtype | None = None,
                       device: torch.device | None = None) -> torch.Tensor:
    """The signals of all groups, one per row, with ``max_lag`` zeros in front and enough behind
    for whole blocks: a single copy of each signal, converted to ``dtype`` on ``device`` as it
    is copied (default: those of the first group).

    Shapes:
        groups: each (signal, time), same time; returns (all signals, padded time)
    """
    length = groups[0].shape[-1]
    size, step, blocks = _block_geometry(length, max_lag)
    rows = sum(g.shape[0] for g in groups)
    out = torch.empty(rows, (blocks - 1) * step + size, dtype=dtype or groups[0].dtype,
                      device=device or groups[0].device)
    out[:, :max_lag] = 0  # only the padding is cleared: the signals overwrite the rest
    out[:, max_lag + length :] = 0
    row = 0
    for group in groups:
        out[row : row + group.shape[0], max_lag : max_lag + length] = group
        row += group.shape[0]
    return out


def _correlate_padded(padded: torch.Tensor, num_a: int, length: int,
                      max_lag: int) -> torch.Tensor:
    """:func:`lagged_correlations` of ``padded[:num_a]`` with every signal in ``padded``."""
    size, step, blocks = _block_geometry(length, max_lag)
    a = padded[:num_a]
    a_blocks = a.unfold(-1, size, step)  # (i, block, size)
    b_blocks = padded.unfold(-1, size, step)
    mask = torch.zeros(size, dtype=a.dtype, device=a.device)
    mask[max_lag : max_lag + step] = 1.0
    cross = torch.zeros(size // 2 + 1, a.shape[0], padded.shape[0], dtype=torch.complex128
                        if a.dtype == torch.float64 else torch.complex64, device=a.device)
    for start in range(0, blocks, _BLOCKS_PER_GROUP):
        part = slice(start, start + _BLOCKS_PER_GROUP)
        # Frequency first and contiguous, so that the product is one batched GEMM.
        fa = torch.fft.rfft(a_blocks[:, part] * mask, dim=-1).permute(2, 0, 1).contiguous()
        fb = torch.fft.rfft(b_blocks[:, part], dim=-1).permute(2, 0, 1).contiguous()
        cross += torch.matmul(fa, fb.mH)  # sum over blocks of A conj(B): conjugated below
    cross = cross.conj()
    circular = torch.fft.irfft(cross.permute(1, 2, 0), n=size, dim=-1)  # (i, j, lag mod size)
    lags = torch.arange(-max_lag, max_lag + 1, device=a.device) % size
    return circular[..., lags]


def _filters_from_padded(padded: torch.Tensor, num_sources: int, num_channels: int, length: int,
                         filters_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-invariant distortion filters of museval's v4, from the whole signals, held one
    channel per row (references first) in ``padded`` (:func:`_padded_for_blocks` with
    ``filters_len - 1``).

    ``filters_all[k, c]`` filters every reference channel so that their sum best fits channel
    ``c`` of estimate ``k`` (least squares over all delays below ``filters_len``);
    ``filters_own[k, c]`` does the same with the channels of reference ``k`` only.

    Shapes:
        padded: (2 * source * channel, padded time) float64
        returns: filters_all (source, channel, source * channel, filters_len),
                 filters_own (source, channel, channel, filters_len)
    """
    sc, taps = num_sources * num_channels, filters_len
    corr = _correlate_padded(padded, sc, length, taps - 1)
    # Gram matrix of the delayed references: G[(a, m), (b, n)] = <s_a delayed m, s_b delayed n>,
    # the correlation of a and b at lag m - n. Taken as blocks ordered (delay, channel): block
    # (m, n) is R(m - n), R(k)[a, b] = <s_a, s_b delayed k>; R(-k) = R(k)^T.
    # D[(a, l), (k, c)] = <s_a delayed l, estimate channel (k, c)>: lags 0 .. taps - 1.
    blocks = corr[:, :sc, taps - 1 :].permute(2, 0, 1)  # (delay, a, b)
    rhs = corr[:, sc:, taps - 1 :].permute(2, 0, 1)  # (delay, a, (k, c))
    own_channels = torch.arange(sc, device=padded.device).view(num_sources, num_channels)
    pick = (slice(None), own_channels[:, :, None], own_channels[:, None, :])
    blocks_own = blocks[pick].permute(1, 0, 2, 3)  # (k, delay, d, d')
    rhs_own = rhs[pick].permute(1, 0, 2, 3)  # (k, delay, d, c)
    solved = _toeplitz_or_dense(blocks, rhs)  # museval: (G + eps I) C = D
    solved_own = _toeplitz_or_dense(blocks_own, rhs_own)  # the same with source k's channels only
    # (delay, (a = s, d), (k, c)) -> (k, c, (s, d), delay); (k, delay, d, c) -> (k, c, d, delay)
    filters_all = solved.reshape(taps, sc, num_sources, num_channels).permute(2, 3, 1, 0)
    filters_own = solved_own.permute(0, 3, 2, 1)
    return filters_all.contiguous(), filters_own.contiguous()


def _toeplitz_or_dense(blocks: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """:func:`solve_block_toeplitz`, on the CPU in numpy (hundreds of tiny steps: the
    per-call cost of torch, and of a GPU launch, would dominate), and where it gives up the
    dense :func:`solve_gram` of the same matrix on the tensors' device, as before.

    Shapes: blocks (..., taps, c, c), rhs (..., taps, c, q); returns (..., taps, c, q).
    """
    solved = solve_block_toeplitz(blocks.cpu().numpy(), rhs.cpu().numpy())
    if solved is not None:
        return torch.from_numpy(solved).to(blocks.device)
    *batch, taps, c, q = rhs.shape
    # The dense matrix, ordered (delay, channel): G[(m, a), (n, b)] = R(m - n)[a, b].
    lag = torch.arange(taps, device=blocks.device)
    diff = lag[:, None] - lag[None, :]
    dense = blocks[..., diff.abs(), :, :]  # (..., m, n, a, b), R(|m - n|)
    dense = torch.where((diff < 0)[:, :, None, None], dense.transpose(-1, -2), dense)
    gram = dense.transpose(-3, -2).reshape(*batch, taps * c, taps * c)
    return solve_gram(gram, rhs.reshape(*batch, taps * c, q)).reshape(*batch, taps, c, q)


def solve_block_toeplitz(blocks: np.ndarray, rhs: np.ndarray,
                         eps: float = EPS) -> np.ndarray | None:
    """Solve ``(G + eps I) x = rhs`` for a symmetric block-Toeplitz ``G`` by the block Levinson
    recursion (Wiggins and Robinson's multichannel form), or return ``None`` where it meets a
    prediction-error matrix that is numerically not positive definite, or a singular one.

    ``G``'s block ``(m, n)`` is ``blocks[m - n]`` for ``m >= n`` and its transpose otherwise.
    museval's Gram matrix of the delayed references is such a matrix with its rows and columns
    ordered (channel, delay); museval solves it densely (``numpy.linalg.solve``). The recursion
    needs ``O(taps^2 c^3)`` arithmetic instead of the ``O(taps^3 c^3)`` of factorising the
    dense matrix (0.15 s against 0.6 s for the 4096 x 4096 matrix of four stereo sources and
    512 taps, on 2 CPU cores) and agrees with the dense solve to rounding (tested): about
    1e-9 relative on real music, the size of the difference between LU and Cholesky there.

    ``G + eps I`` is positive definite exactly when every backward prediction-error matrix of
    the recursion (the Schur complement of each leading block) is, which one batched Cholesky
    factorisation checks at the end.

    Shapes:
        blocks: (..., taps, c, c) float64
        rhs: (..., taps, c, q) float64
        returns: (..., taps, c, q)
    """
    *batch, taps, c, _ = blocks.shape
    q = rhs.shape[-1]
    eye = np.eye(c)
    r0 = blocks[..., 0, :, :] + eps * eye
    # Block rows as wide matrices: ``ahead`` holds R(taps - 1), ..., R(1), R(0), so that the
    # n blocks before the last are R(n) ... R(1); ``behind`` holds R(1)^T, R(2)^T, ...
    ahead = np.ascontiguousarray(np.swapaxes(blocks[..., ::-1, :, :], -3, -2))
    ahead = ahead.reshape(*batch, c, taps * c)
    behind = np.ascontiguousarray(np.swapaxes(np.swapaxes(blocks[..., 1:, :, :], -1, -2), -3, -2))
    behind = behind.reshape(*batch, c, (taps - 1) * c)
    y = rhs.reshape(*batch, taps * c, q)
    # The forward predictor [I; f_1; ...] and the solution side by side (one product gives
    # both of their errors); the backward predictor [...; b_1; I] kept aligned to the end of
    # its buffer, so that prepending a zero block costs nothing.
    fx = np.zeros((*batch, taps * c, c + q))
    back = np.zeros((*batch, taps * c, c))
    fx[..., :c, :c] = eye
    back[..., (taps - 1) * c :, :] = eye
    fwd_err = bwd_err = r0  # each update below makes a new array
    schur = np.empty((*batch, taps, c, c))
    schur[..., 0, :, :] = r0
    try:
        fx[..., :c, c:] = np.linalg.solve(r0, rhs[..., 0, :, :])
        for n in range(1, taps):
            row = ahead[..., (taps - 1 - n) * c : (taps - 1) * c]
            b_n = back[..., (taps - n) * c :, :]
            errors = row @ fx[..., : n * c, :]  # the new bottom block of [f; 0] and of [x; 0]
            delta_f, epsilon = errors[..., :c], errors[..., c:]
            delta_b = behind[..., : n * c] @ b_n  # the new top block of [0; b]
            alpha = np.linalg.solve(bwd_err, delta_f)
            beta = np.linalg.solve(fwd_err, delta_b)
            from_f = fx[..., : n * c, :c] @ beta
            fx[..., c : (n + 1) * c, :c] -= b_n @ alpha
            back[..., (taps - n - 1) * c : (taps - 1) * c, :] -= from_f
            fwd_err = fwd_err - delta_b @ alpha
            bwd_err = bwd_err - delta_f @ beta
            schur[..., n, :, :] = bwd_err
            gamma = np.linalg.solve(bwd_err, y[..., n * c : (n + 1) * c, :] - epsilon)
            fx[..., : (n + 1) * c, c:] += back[..., (taps - n - 1) * c :, :] @ gamma
        np.linalg.cholesky(schur)
    except np.linalg.LinAlgError:
        return None
    solved = fx[..., c:].reshape(*batch, taps, c, q)
    return solved if bool(np.isfinite(solved).all()) else None


#: Block size of :func:`_blocked_cholesky` (the trailing updates are matrix products; 512 was
#: fastest for the 4096 x 4096 Gram matrix on 2 CPU cores).
_CHOLESKY_BLOCK = 512


def solve_gram(gram: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Solve ``(gram + eps I) x = target`` as museval does, for a Gram matrix (batched or not).

    museval calls ``numpy.linalg.solve`` (LU with partial pivoting) and, when that reports an
    exactly singular matrix, ``numpy.linalg.lstsq(gram, target)`` (no ``eps``; minimum-norm
    least squares, ``rcond`` = machine precision times the size). ``gram + eps I`` is
    positive definite in exact arithmetic, so a Cholesky factorisation gives the same solution
    up to rounding with half the arithmetic, spent in matrix products by the blocked form
    below. Where rounding makes it numerically indefinite or singular (e.g. a source whose
    channels are identical), the factorisation says so and museval's two steps run instead,
    item by item, with one check more: an LU solution that does not solve the system (relative
    residual over :data:`_RESIDUAL_LIMIT`) is replaced by the least-squares one too. On such a
    matrix LU may meet no exactly zero pivot and return a finite solution with huge components
    along the near-null directions; which one depends on the BLAS build and its thread count
    (Intel MKL with one thread gave entries of 6e24 and SAR 0 dB where numpy, and MKL with two
    threads, report the matrix singular). The projections BSSEval needs are the same for every
    exact solution, and least squares computes them stably.
    """
    factor = _blocked_cholesky(gram, eps)
    if factor is not None:
        half = torch.linalg.solve_triangular(factor, target, upper=False)
        return torch.linalg.solve_triangular(factor.mT, half, upper=True)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    shifted = gram + eps * eye
    solved, info = torch.linalg.solve_ex(shifted, target)
    residual = torch.linalg.matrix_norm(shifted @ solved - target)
    singular = (info != 0) | ~(residual <= _RESIDUAL_LIMIT * torch.linalg.matrix_norm(target))
    if bool(singular.any()):
        if gram.dim() == 2:
            return torch.linalg.lstsq(gram, target, driver=_LSTSQ_DRIVER(gram)).solution
        for k in singular.nonzero().flatten().tolist():
            solved[k] = torch.linalg.lstsq(gram[k], target[k], driver=_LSTSQ_DRIVER(gram)).solution
    return solved


#: Largest relative residual ``|A x - b| / |b|`` (Frobenius) accepted from the LU solve of a
#: matrix that failed the Cholesky factorisation (:func:`solve_gram`).
_RESIDUAL_LIMIT = 1e-6


def _LSTSQ_DRIVER(a: torch.Tensor) -> str | None:  # noqa: N802 - reads like a constant
    """numpy's lstsq is LAPACK gelsd (SVD); torch offers it on the CPU only."""
    return "gelsd" if a.device.type == "cpu" else None


def _blocked_cholesky(a: torch.Tensor, eps: float = 0.0,
                      block: int = _CHOLESKY_BLOCK) -> torch.Tensor | None:
    """Lower Cholesky factor of ``a + eps I`` (..., n, n), right-looking by blocks, or ``None``
    when that is not numerically positive definite. Only the lower triangle of ``a`` is read."""
    n = a.shape[-1]
    low = a.tril()
    low.diagonal(dim1=-2, dim2=-1).add_(eps)
    for k in range(0, n, block):
        e = min(k + block, n)
        diag, info = torch.linalg.cholesky_ex(low[..., k:e, k:e])
        if bool((info != 0).any()):
            return None
        low[..., k:e, k:e] = diag
        if e == n:
            break
        # Panel: L21 = A21 L11^-T; then the trailing lower triangle loses L21 L21^T, one block
        # row at a time so that only the lower part is computed.
        panel = torch.linalg.solve_triangular(diag, low[..., e:, k:e].mT, upper=False).mT
        low[..., e:, k:e] = panel
        for i in range(e, n, block):
            j = min(i + block, n)
            low[..., i:j, e:j] -= panel[..., i - e : j - e, :] @ panel[..., : j - e, :].mT
    return low.tril_()


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c at least ``n`` (a fast size for every FFT backend)."""
    best = 1 << math.ceil(math.log2(n))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _framewise_scores(ref: torch.Tensor, est: torch.Tensor, filters_all: torch.Tensor,
                      filters_own: torch.Tensor, window: int, hop: int,
                      frames_per_batch: int) -> FrameScores:
    num_sources, num_channels, length = ref.shape
    sc = num_sources * num_channels
    taps = filters_all.shape[-1]
    frame_len = min(window, length)
    count = num_frames(length, window, hop)
    n_fft = _fft_size(frame_len + taps - 1)
    # Both projections as one matrix per frequency: rows (all | own, k, c), columns (a = s, d).
    own = torch.zeros(num_sources, num_channels, num_sources, num_channels, taps,
                      dtype=ref.dtype, device=ref.device)
    index = torch.arange(num_sources, device=ref.device)
    own[index, :, index] = filters_own
    stacked = torch.stack([filters_all, own.reshape(num_sources, num_channels, sc, taps)])
    spec = torch.fft.rfft(stacked.reshape(2 * sc, sc, taps), n=n_fft).permute(2, 0, 1)
    # Real block form of the complex product: [[Hr, -Hi], [Hi, Hr]] @ [Xr; Xi].
    matrix = torch.cat([torch.cat([spec.real, -spec.imag], dim=2),
                        torch.cat([spec.imag, spec.real], dim=2)], dim=1).contiguous()
    # Parseval for a one-sided spectrum: every bin counts twice, except DC (and Nyquist).
    weight = torch.full((n_fft // 2 + 1,), 2.0 / n_fft, dtype=ref.dtype, device=ref.device)
    weight[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weight[-1] = 1.0 / n_fft
    scale = weight.sqrt().view(-1, 1, 1, 1, 1)
    ref_frames = ref.unfold(-1, frame_len, hop)[:, :, :count]  # (source, channel, frame, time)
    est_frames = est.unfold(-1, frame_len, hop)[:, :, :count]
    results = [_score_frames(ref_frames[:, :, t : t + frames_per_batch],
                             est_frames[:, :, t : t + frames_per_batch], matrix, scale, n_fft)
               for t in range(0, count, frames_per_batch)]
    metrics = torch.cat(results, dim=-1).cpu()  # (metric, source, frame)
    return FrameScores(sdr=metrics[0], isr=metrics[1], sir=metrics[2], sar=metrics[3])


def _score_frames(ref: torch.Tensor, est: torch.Tensor, matrix: torch.Tensor,
                  scale: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Scores of a batch of frames. (source, channel, frame, time) twice -> (4, source, frame).

    The projections are full linear convolutions no longer than ``n_fft``, so their energies,
    and those of their differences with the (zero-padded) frames, are taken in the frequency
    domain (Parseval): spectra are scaled by the square root of each one-sided bin's weight
    (``scale``), so that an energy is a plain sum of squares, and no inverse transform is needed.
    Spectra are kept as real tensors (freq, re/im, source, channel, frame).
    """
    num_sources, num_channels, count, _ = ref.shape
    sc = num_sources * num_channels

    def split_spectrum(x: torch.Tensor) -> torch.Tensor:
        parts = torch.view_as_real(torch.fft.rfft(x, n=n_fft)).permute(3, 4, 0, 1, 2)
        out = torch.empty(parts.shape, dtype=parts.dtype, device=parts.device)
        return torch.mul(parts, scale, out=out)  # scaled and contiguous in one pass

    def energy(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """(freq, 2, s, c, frame) -> (s, frame); ``inplace`` squares ``x`` itself."""
        return (x.square_() if inplace else x.square()).sum(dim=(0, 1)).sum(dim=1)

    spec_ref = split_spectrum(ref)
    spec_est = split_spectrum(est)
    proj = torch.matmul(matrix, spec_ref.view(-1, 2 * sc, count))
    proj = proj.view(-1, 2, 2, num_sources, num_channels, count)
    proj_all, proj_own = proj[:, :, 0], proj[:, :, 1]  # on all references / on the own one
    e_true = ref.square().sum(dim=(1, 3))
    sdr = _safe_db(e_true, (est - ref).square().sum(dim=(1, 3)))
    e_own, e_all = energy(proj_own), energy(proj_all)
    # The three differences are made, and squared, in place, in an order that reads each
    # operand before it is overwritten: no new spectrum-sized buffers (tens of MB each).
    sar = _safe_db(e_all, energy(spec_est.sub_(proj_all), inplace=True))
    sir = _safe_db(e_own, energy(proj_all.sub_(proj_own), inplace=True))
    isr = _safe_db(e_true, energy(proj_own.sub_(spec_ref), inplace=True))
    scores = torch.stack([sdr, isr, sir, sar])
    return scores  # frames with a silent source are set to NaN by the caller


def _safe_db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``10 log10(num / den)``, and ``+inf`` where ``den`` is zero (museval's ``_safe_db``)."""
    return torch.where(den == 0, torch.full_like(num, math.inf), 10 * torch.log10(num / den))
