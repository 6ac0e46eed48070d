"""Multichannel Wiener filter with expectation-maximisation (EM), batched, on complex tensors.

This is the post-processing of Open-Unmix and X-UMX (norbert; openunmix ``filtering.py``;
spec §4.1 step 5), restated for native complex tensors in the canonical layout and batched over
every chunk or track at once. Each batch item is filtered independently: its own scale factor,
power spectral densities and spatial covariance matrices, exactly as if it were the whole input.

Model (Duong et al. 2010; Nugraha et al. 2016): each source image is a zero-mean complex Gaussian
with covariance ``v_j(f, t) R_j(f)``, where ``v_j`` is a power spectral density and ``R_j`` a
per-bin ``channel x channel`` spatial covariance. One EM iteration:

1. ``v_j = mean over channels of |y_j|^2``
2. ``R_j = sum_t y_j y_j^H / (eps + sum_t v_j)``
3. ``C_x = sqrt(eps) I + sum_j v_j R_j`` (the mixture covariance)
4. ``y_j = v_j R_j C_x^{-1} x`` (the Wiener estimate)

Numerics follow openunmix's port: ``eps`` defaults to 1e-10 and the mixture and estimates are
divided by ``max(1, max|x| / 10)`` before EM and multiplied back after. norbert (asteroid's
evaluation) instead uses the machine epsilon of float64; pass ``eps`` for that.

Windows: openunmix's ``Separator`` does not filter a track at once but in consecutive windows of
``wiener_win_len`` (300) STFT frames, the last one shorter, each filtered on its own (its own
scale factor and covariances ``R_j``); asteroid and Sony filter the whole track. :func:`wiener`'s
``window`` argument gives either behaviour (0: one window).

One deliberate difference from openunmix: its ``filtering.atan2`` helper, called for the mixture
phase, adds 1 in place to the real part of every mixture bin that is exactly 0 + 0i, so its EM then
filters a mixture value of 1 there (a spurious component wherever one channel of a bin is exactly
zero and the other is not). cumx takes the phase of such a bin as 0, as openunmix does, but leaves
the mixture itself unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

import torch

from cumx_cli.engine.dsp.stft import magnitude
from cumx_cli.engine.shapes import check_shape

T = TypeVar("T")
R = TypeVar("R")

_SPEC = ("batch", "source", "channel", "freq", "frame")
_MIX = ("batch", "channel", "freq", "frame")


def initial_estimates(
    magnitudes: torch.Tensor, mix_stft: torch.Tensor, *, softmask: bool, eps: float,
    mix_magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Complex source estimates before EM.

    With ``softmask`` False, each source is its magnitude with the mixture's phase (where the
    mixture is exactly zero its phase is taken as 0, as ``atan2(0, 0)`` gives). With ``softmask``
    True, each source is the mixture times its ratio mask ``|S_j| / (eps + sum |S|)``.

    Shapes:
        magnitudes: (batch, source, channel, freq, frame), real, non-negative
        mix_stft:   (batch, channel, freq, frame), complex
        returns:    (batch, source, channel, freq, frame), complex
    """
    if softmask:
        ratio = magnitudes / (eps + magnitudes.sum(dim=1, keepdim=True))
        return mix_stft.unsqueeze(1) * ratio
    return magnitudes * _phasor(mix_stft, mix_magnitude).unsqueeze(1)


def _phasor(x: torch.Tensor, mag: torch.Tensor | None = None) -> torch.Tensor:
    """``exp(i angle(x))``: ``x / |x|``, and 1 where ``x`` is 0 (``mag`` is ``|x|`` if known).

    Divided as real pairs (``view_as_real``): the same numbers as a complex-by-real division,
    without its slow type promotion.
    """
    mag = x.abs() if mag is None else mag
    zero = mag == 0
    pairs = torch.view_as_real(x) / torch.where(zero, 1.0, mag).unsqueeze(-1)
    pairs[..., 0].add_(zero)  # x is 0 there, so this gives exactly 1 + 0i
    return torch.view_as_complex(pairs)


#: Frames per block inside EM: temporaries stay small whatever the input length. At 32 frames
#: a (source, freq, frame) block of four sources is 1 MB of float32 and stays in a core's L2
#: cache between the products; a 26 s stereo chunk filtered 7% faster than with 128 frames
#: (one thread, Intel Xeon, 2 MB L2 per core).
BLOCK_FRAMES = 32

#: A function giving the current estimates for frames ``[start, stop)``: (b, s, c, f, n) complex.
Estimates = Callable[[int, int], torch.Tensor]


class Runner(Protocol):
    """Runs ``fn`` on every item and returns the results in order, when all are done (for
    example :meth:`~cumx_cli.engine.model.threads.SourceThreads.map`: side by side)."""

    def __call__(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]: ...


def _in_turn(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    return [fn(item) for item in items]


def _frame_ranges(num_frames: int, block: int, parts: int) -> list[range]:
    """``parts`` ranges of block starts covering ``[0, num_frames)``, as equal as whole blocks
    allow (fewer when there are fewer blocks)."""
    starts = range(0, num_frames, block)
    if len(starts) <= 1:
        return [starts]
    size = -(-len(starts) // min(parts, len(starts)))
    return [starts[k : k + size] for k in range(0, len(starts), size)]


def _covariances(estimates: Estimates, num_frames: int, eps: float,
                 block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PSDs and spatial covariances of the current estimates (EM steps 1-2), frame block by block.

    The covariance of each bin is Hermitian, so only its upper triangle is summed.

    Returns:
        v: (batch, source, freq, frame), real
        r: (batch, source, freq, channel, channel), complex, Hermitian
    """
    v: torch.Tensor | None = None
    r: torch.Tensor | None = None
    for start in range(0, num_frames, block):
        y = estimates(start, min(num_frames, start + block))
        b, s, c, f, _ = y.shape
        if v is None:
            v = y.new_empty((b, s, f, num_frames), dtype=y.real.dtype)
            r = y.new_zeros((b, s, f, c, c))
        assert r is not None
        power = y.real.square() + y.imag.square()
        v[..., start : start + y.shape[-1]] = power.mean(dim=2)
        for i in range(c):
            r[..., i, i] += power[:, :, i].sum(dim=-1)
            for j in range(i + 1, c):
                r[..., i, j] += torch.linalg.vecdot(y[:, :, j], y[:, :, i])  # sum_t y_i conj(y_j)
    assert v is not None and r is not None
    return v, _normalised(r, v, eps)


def _normalised(r: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
    """Divide the summed upper triangles ``r`` by ``eps + sum_t v`` and fill the lower
    triangles as their conjugates (EM step 2's end). Shapes: r (b, s, f, c, c), v (b, s, f, t)."""
    r /= (eps + v.sum(dim=-1))[..., None, None]
    for i in range(r.shape[-1]):
        for j in range(i + 1, r.shape[-1]):
            r[..., j, i] = r[..., i, j].conj()
    return r


def _weighted(v: torch.Tensor, entry: torch.Tensor) -> torch.Tensor:
    """``sum_j v_j(f, t) entry_j(f)``: (b, s, f, t) and (b, s, f) to (b, f, t).

    Accumulated source by source (one fused multiply-add each, no (b, s, f, t) temporary).
    """
    if entry.is_complex():
        return torch.complex(_weighted(v, entry.real), _weighted(v, entry.imag))
    entry = entry.contiguous()  # a strided entry of r would keep the products from vectorising
    acc = v[:, 0] * entry[:, 0].unsqueeze(-1)
    for j in range(1, v.shape[1]):
        acc.addcmul_(v[:, j], entry[:, j].unsqueeze(-1))
    return acc


def _mix_covariance_solve(v: torch.Tensor, r: torch.Tensor, mix: torch.Tensor,
                          eps: float) -> torch.Tensor:
    """``C_x^{-1} x`` with ``C_x = sqrt(eps) I + sum_j v_j R_j`` (EM step 3).

    Shapes:
        v:       (batch, source, freq, frame), real
        r:       (batch, source, freq, channel, channel), complex Hermitian
        mix:     (batch, channel, freq, frame), complex
        returns: (batch, channel, freq, frame), complex
    """
    channels = mix.shape[1]
    reg = eps**0.5
    if channels == 1:
        return mix / (_weighted(v, r[..., 0, 0].real) + reg).unsqueeze(1)
    if channels == 2:
        # Hermitian 2x2: [[a, b], [conj(b), d]] with a, d real; det = ad - |b|^2 is real.
        # The inverse is [[d, -b], [-conj(b), a]] / det; the real factors are cast to complex
        # once so that every product below runs on torch's vectorised complex kernels.
        a = _weighted(v, r[..., 0, 0].real).add_(reg)
        d = _weighted(v, r[..., 1, 1].real).add_(reg)
        b_re = _weighted(v, r[..., 0, 1].real)
        b_im = _weighted(v, r[..., 0, 1].imag)
        inv_det = (a * d).sub_(b_re.square()).sub_(b_im.square()).reciprocal_()
        b = torch.complex(b_re.mul_(inv_det), b_im.mul_(inv_det))
        x0, x1 = mix[:, 0], mix[:, 1]
        out = torch.empty_like(mix)
        torch.mul(x0, d.mul_(inv_det).to(mix.dtype), out=out[:, 0]).addcmul_(b, x1, value=-1)
        torch.mul(x1, a.mul_(inv_det).to(mix.dtype), out=out[:, 1]).addcmul_(b.conj(), x0, value=-1)
        return out
    cxx = torch.einsum("bsft,bsfij->bftij", v.to(r.dtype), r)
    cxx = cxx + reg * torch.eye(channels, dtype=r.dtype, device=r.device)
    solved = torch.linalg.solve(cxx, mix.permute(0, 2, 3, 1).unsqueeze(-1))  # (b, f, t, c, 1)
    return solved.squeeze(-1).permute(0, 3, 1, 2)


def _frame_major(lead: tuple[int, ...], freq: int, frames: int, like: torch.Tensor,
                 dtype: torch.dtype) -> torch.Tensor:
    """An empty ``(*lead, freq, frame)`` tensor stored frame-major (``freq`` has stride 1).

    That is the layout ``torch.stft`` returns and the inverse transform reads without a copy,
    and it keeps a block of frames contiguous.
    """
    return like.new_empty((*lead, frames, freq), dtype=dtype).transpose(-1, -2)


def _cross_phasor(x_i: torch.Tensor, x_k: torch.Tensor, mag_i: torch.Tensor,
                  mag_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``u_i conj(u_k)``, ``u = x / |x|`` (1 where ``x`` is 0),
    as two contiguous real tensors of the inputs' shape.

    Computed as ``x_i conj(x_k) / (|x_i| |x_k|)``: one complex product and one real division
    instead of two phasors (the same numbers to rounding). Where that product of magnitudes is
    zero, below ``tiny * 2^24`` (where ``x_i conj(x_k)`` would lose precision) or not finite,
    and off a CPU (the test would wait for the device), the phasors are formed as
    :func:`_phasor` does.
    """
    den = mag_i * mag_k
    if den.device.type == "cpu" and den.numel():
        low, high = torch.aminmax(den)
        info = torch.finfo(den.dtype)
        if float(low) >= info.tiny * 2.0**24 and float(high) <= info.max:
            cross = x_i * x_k.conj()
            scale = den.reciprocal_()
            return cross.real * scale, cross.imag * scale
    cross = _phasor(x_i, mag_i) * _phasor(x_k, mag_k).conj()
    return cross.real.contiguous(), cross.imag.contiguous()


def _factored_covariances(amplitudes: Estimates, mix: torch.Tensor, mix_mag: torch.Tensor,
                          scale: torch.Tensor, num_frames: int, eps: float,
                          block: int, run: Runner | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """EM steps 1-2 for estimates of the form ``y_j[c] = scale * a_j[c] * u[c]``, without
    forming them.

    Every initial estimate has that form: a real amplitude ``a`` times the mixture's phasor ``u``
    (``|u| = 1``) of the same channel, times the EM scale ``scale`` (one per batch item): with
    softmask ``a = |x| * mask``, and the residual ``x - sum_j y_j`` has ``a = |x| - sum_j a_j``
    (it may be negative). Then ``|y_j[c]|^2 = scale^2 a_j[c]^2`` and ``sum_t y_j[i] conj(y_j[k])
    = scale^2 sum_t a_j[i] a_j[k] u[i] conj(u[k])``, so the PSDs and covariances come from real
    products and one complex product per channel pair shared by all sources; ``scale^2`` is
    applied to the sums once. The result equals :func:`_covariances` of the complex estimates
    up to rounding.

    Args:
        amplitudes: frames ``[start, stop)`` of ``a``: (batch, source, channel, freq, n), real.
        mix, mix_mag: the mixture (batch, channel, freq, frame), complex, and ``|mix|``.
        scale: (batch,) real.
        run: with a runner, the frames are split in two halves whose sums it computes (side by
            side), added after; the same numbers to rounding.
    """
    square = scale.square()[:, None, None, None]
    pairs = [(i, k) for i in range(mix.shape[1]) for k in range(i + 1, mix.shape[1])]
    first = amplitudes(0, min(num_frames, 1))
    b, s, c, f, _ = first.shape
    v = _frame_major((b, s), f, num_frames, first, first.dtype)

    def sums(starts: range) -> tuple[torch.Tensor, torch.Tensor]:
        diag = first.new_zeros((b, s, f, c))  # sum_t a_j[i]^2
        cross = first.new_zeros((b, s, f, len(pairs)), dtype=first.dtype.to_complex())
        for start in starts:
            block_sums(start, min(num_frames, start + block), diag, cross)
        return diag, cross

    def block_sums(start: int, stop: int, diag: torch.Tensor, cross: torch.Tensor) -> None:
        a = amplitudes(start, stop)
        squares = [a[:, :, i] * a[:, :, i] for i in range(c)]
        vb = v[..., start:stop]  # mean over channels, times scale^2
        if c == 1:
            torch.mul(squares[0], square, out=vb)
        else:
            torch.add(squares[0], squares[1], out=vb)
            for extra in squares[2:]:
                vb.add_(extra)
            vb.mul_(square / c)
        for i in range(c):
            diag[..., i] += squares[i].sum(dim=-1)
        for p, (i, k) in enumerate(pairs):
            re, im = _cross_phasor(mix[:, i, :, start:stop], mix[:, k, :, start:stop],
                                   mix_mag[:, i, :, start:stop], mix_mag[:, k, :, start:stop])
            prod = a[:, :, i] * a[:, :, k]  # (b, s, f, n)
            cross[..., p] += torch.complex(torch.linalg.vecdot(prod, re.unsqueeze(1)),
                                           torch.linalg.vecdot(prod, im.unsqueeze(1)))

    parts = (run or _in_turn)(sums, _frame_ranges(num_frames, block, 2 if run else 1))
    diag, cross = parts[0]
    for more_diag, more_cross in parts[1:]:
        diag, cross = diag + more_diag, cross + more_cross
    # eps + sum_t v, from the diagonal sums (sum_t v = scale^2 / c * sum_i sum_t a_j[i]^2)
    weight = eps + diag.sum(dim=-1) * (square[..., 0] / c)
    diag = diag * square
    cross = cross * square
    r = diag.new_empty((*diag.shape[:-1], c, c), dtype=cross.dtype)
    for i in range(c):
        r[..., i, i] = diag[..., i] / weight
    for p, (i, k) in enumerate(pairs):
        r[..., i, k] = cross[..., p] / weight
        r[..., k, i] = r[..., i, k].conj()
    return v, r


def _em_output(v: torch.Tensor, r: torch.Tensor, mix: Estimates, num_sources: int,
               num_frames: int, eps: float, block: int,
               out_scale: torch.Tensor | None = None, out: torch.Tensor | None = None,
               run: Runner | None = None) -> torch.Tensor:
    """EM steps 3-4 from PSDs ``v`` and covariances ``r``: the new estimates, frame-major,
    multiplied by ``out_scale`` (batch,) if given, written into ``out`` if given (a
    (batch, source, channel, freq, frame) complex tensor or view). With a runner, the two
    halves of the frames are computed by it (side by side); each block is independent."""
    r_out = r if out_scale is None else r * out_scale.to(r.dtype)[:, None, None, None, None]
    channels = r.shape[-1]
    # Each entry R_j[i, k] as its own contiguous (b, s, f, 1) tensor, for vectorised products.
    coef = [[r_out[..., i, k].contiguous().unsqueeze(-1) for k in range(channels)]
            for i in range(channels)]
    if out is None:
        first = mix(0, min(num_frames, 1))
        b, _, f, _ = first.shape
        out = _frame_major((b, num_sources, channels), f, num_frames, first, first.dtype)
    result = out

    def blocks(starts: range) -> None:
        for start in starts:
            stop = min(num_frames, start + block)
            mix_b = mix(start, stop)
            vb = v[..., start:stop]
            z = _mix_covariance_solve(vb, r, mix_b, eps)
            vb = vb.to(result.dtype)  # complex, for the vectorised complex kernels
            # y_j = v_j R_j z, one output channel at a time: sum_k R_j[i, k](f) z_k(f, t).
            for i in range(channels):
                acc = result[:, :, i, :, start:stop]
                torch.mul(coef[i][0], z[:, None, 0], out=acc)
                for k in range(1, channels):
                    acc.addcmul_(coef[i][k], z[:, None, k])
                acc.mul_(vb)

    (run or _in_turn)(blocks, _frame_ranges(num_frames, block, 2 if run else 1))
    return result


def _em_step(estimates: Estimates, mix: Estimates, num_sources: int, num_frames: int,
             eps: float, block: int, out_scale: torch.Tensor | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """One EM iteration; returns the new estimates (batch, source, channel, freq, frame),
    multiplied by ``out_scale`` (batch,) if given, written into ``out`` if given."""
    v, r = _covariances(estimates, num_frames, eps, block)
    return _em_output(v, r, mix, num_sources, num_frames, eps, block, out_scale, out)


def expectation_maximization(
    estimates: torch.Tensor | Estimates, mix_stft: torch.Tensor | Estimates, niter: int,
    eps: float, num_sources: int | None = None, num_frames: int | None = None,
    block: int = BLOCK_FRAMES, out_scale: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Refine complex source estimates with ``niter`` EM iterations (see the module docstring).

    ``estimates`` and ``mix_stft`` are tensors, or functions of a frame range ``(start, stop)``
    giving that block (then ``num_sources`` and ``num_frames`` are required), so that the
    initial estimates need never be held whole. The result is multiplied by ``out_scale``
    (one factor per batch item) if given, and written into ``out`` if given.
    The work runs in blocks of ``block`` frames, so temporaries stay small.

    Shapes:
        estimates: (batch, source, channel, freq, frame), complex
        mix_stft:  (batch, channel, freq, frame), complex
        returns:   (batch, source, channel, freq, frame), complex
    """
    if isinstance(estimates, torch.Tensor):
        tensor, num_sources = estimates, estimates.shape[1]
        estimates = lambda a, b: tensor[..., a:b]  # noqa: E731
    if isinstance(mix_stft, torch.Tensor):
        mix_tensor, num_frames = mix_stft, mix_stft.shape[-1]
        mix_stft = lambda a, b: mix_tensor[..., a:b]  # noqa: E731
    if num_sources is None or num_frames is None:
        raise ValueError("num_sources and num_frames are required when passing functions")
    y = None
    for it in range(niter):
        source = estimates if y is None else (lambda a, b, y=y: y[..., a:b])
        last = it == niter - 1
        y = _em_step(source, mix_stft, num_sources, num_frames, eps, block,
                     out_scale if last else None, out if last else None)
    if y is None:
        raise ValueError("niter must be at least 1")
    return y


def wiener(
    magnitudes: torch.Tensor,
    mix_stft: torch.Tensor,
    *,
    niter: int = 1,
    softmask: bool = False,
    residual: bool = False,
    eps: float = 1e-10,
    scale_factor: float = 10.0,
    window: int = 0,
    mix_magnitude: torch.Tensor | None = None,
    run: Runner | None = None,
) -> torch.Tensor:
    """Complex source estimates from source magnitudes and the complex mixture.

    Args:
        magnitudes: estimated source magnitudes.
        mix_stft: the mixture's complex STFT.
        niter: EM iterations; 0 returns the initial estimates.
        softmask: start from ratio masks instead of the mixture phase.
        residual: append ``mixture - sum(estimates)`` as one more source before EM.
        eps: regulariser (see the module docstring).
        scale_factor: the mixture is divided by ``max(1, max|x| / scale_factor)`` during EM
            (per window).
        window: filter consecutive windows of this many frames independently, as openunmix's
            ``Separator`` does with ``wiener_win_len`` (the last window may be shorter); 0 filters
            all frames at once (norbert, asteroid, Sony). Without EM (``niter`` 0) every frame is
            independent and the windows change nothing.
        mix_magnitude: ``|mix_stft|`` if the caller has it already (saves recomputing it).
        run: how the work is shared out (a :class:`Runner`, for example
            :meth:`~cumx_cli.engine.model.threads.SourceThreads.map`, to run it side by side):
            the windows, each called with its first frame (each writes its own frames only);
            a single window's first EM iteration, as two halves of its frames. By default
            everything runs here, one part after the other. The numbers are the same to
            rounding (the halves' sums are added in another order).

    Shapes:
        magnitudes: (batch, source, channel, freq, frame), real
        mix_stft:   (batch, channel, freq, frame), complex
        returns:    (batch, source (+1 with residual), channel, freq, frame), complex
    """
    check_shape(mix_stft, _MIX)
    b, c, f, t = mix_stft.shape
    check_shape(magnitudes, _SPEC, batch=b, channel=c, freq=f, frame=t)
    if window < 0:
        raise ValueError(f"window must be 0 or a number of frames, got {window}")
    if niter == 0:
        y = initial_estimates(magnitudes, mix_stft, softmask=softmask, eps=eps)
        if residual:
            y = torch.cat([y, (mix_stft - y.sum(dim=1)).unsqueeze(1)], dim=1)
        return y
    mix_mag = magnitude(mix_stft) if mix_magnitude is None else mix_magnitude
    core = functools.partial(_wiener_em, niter=niter, softmask=softmask, residual=residual,
                             eps=eps, scale_factor=scale_factor)
    if window == 0 or window >= t:
        return core(magnitudes, mix_stft, mix_mag, run=run)
    # Windows one after the other (each call batched over every item and bin), written straight
    # into one frame-major output: no folded copies of the inputs, no concatenation after.
    out = _frame_major((b, magnitudes.shape[1] + int(residual), c), f, t, mix_stft, mix_stft.dtype)

    def one(start: int) -> None:
        frames = slice(start, min(t, start + window))
        core(magnitudes[..., frames], mix_stft[..., frames], mix_mag[..., frames],
             out=out[..., frames])

    (run or _in_turn)(one, range(0, t, window))
    return out


def _wiener_em(
    magnitudes: torch.Tensor, mix_stft: torch.Tensor, mix_mag: torch.Tensor, *, niter: int,
    softmask: bool, residual: bool, eps: float, scale_factor: float,
    out: torch.Tensor | None = None, run: Runner | None = None,
) -> torch.Tensor:
    """:func:`wiener` with EM over all the frames given, as one window (``niter`` >= 1).

    Written into ``out`` if given; ``run`` shares out the first iteration (:func:`wiener`).
    Shapes as :func:`wiener`; ``mix_mag`` is ``|mix_stft|``.
    """
    t = mix_stft.shape[-1]
    # EM runs on the mixture and estimates divided by the scale. Both are scaled block by block
    # as EM asks for them, so neither a scaled copy nor the initial estimates are held whole.
    peak = mix_mag.amax(dim=(1, 2, 3)) / scale_factor
    scale = torch.clamp(peak, min=1.0).to(mix_stft.real.dtype)
    inv = (1.0 / scale)[:, None, None, None]
    inv_complex = inv.to(mix_stft.dtype)  # complex x complex products are vectorised

    def mix_block(start: int, stop: int) -> torch.Tensor:
        return mix_stft[..., start:stop] * inv_complex

    def amplitudes(start: int, stop: int) -> torch.Tensor:
        """Initial estimates are these real amplitudes times the mixture's phasor (and the
        EM scale, which :func:`_factored_covariances` applies)."""
        mags = magnitudes[..., start:stop]
        if not (softmask or residual):
            return mags
        mix_b = mix_mag[..., start:stop]
        amps = mix_b.unsqueeze(1) * (mags / (eps + mags.sum(dim=1, keepdim=True))) if softmask else mags
        if residual:
            amps = torch.cat([amps, (mix_b - amps.sum(dim=1)).unsqueeze(1)], dim=1)
        return amps

    num_sources = magnitudes.shape[1] + int(residual)
    v, r = _factored_covariances(amplitudes, mix_stft, mix_mag, 1.0 / scale, t, eps, BLOCK_FRAMES,
                                 run)
    if niter == 1:
        return _em_output(v, r, mix_block, num_sources, t, eps, BLOCK_FRAMES, out_scale=scale,
                          out=out, run=run)
    y = _em_output(v, r, mix_block, num_sources, t, eps, BLOCK_FRAMES, run=run)
    return expectation_maximization(y, mix_block, niter - 1, eps, num_frames=t, out_scale=scale,
                                    out=out)
