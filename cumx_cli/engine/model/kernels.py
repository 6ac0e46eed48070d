"""The dense layers' matrix products on a CPU, through oneDNN where that is faster.

torch computes ``F.linear`` in float32 with MKL's ``sgemm``. On the AMD EPYC (Zen 5) development
machine MKL reaches about 90 GFLOPS per core on Open-Unmix's three layer shapes, while oneDNN,
which torch also ships (its LSTMs already run on it), reaches 180-220 GFLOPS on the same products
(one thread, 300 to 2326 rows; what it gives a whole run: README "Speed and memory",
``benchmarks/separate_speed.py``). :func:`linear` uses oneDNN for
inference on a CPU and ``F.linear`` everywhere else (training, CUDA, other dtypes).

The oneDNN entry point, ``torch.ops.mkldnn._linear_pointwise``, is the one torch's own compiler
(inductor) calls for CPU linear layers; it is not a public API. So it is used only after a check
on first use: the op exists, runs, and gives ``F.linear``'s numbers to float32 rounding. If any
of that fails (another torch build, a CPU torch has no oneDNN kernels for), ``F.linear`` is used.
The two differ only in the order of the sums: about 1e-6 relative, far below the parity
tolerances.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, weight)`` (no bias), through oneDNN when :func:`onednn_linear` allows.

    Shapes:
        x:       (rows, in), float32
        weight:  (out, in)
        returns: (rows, out)
    """
    if (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.dim() == 2 and onednn_linear()):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(), None,
                                                  "none", [], "")
    return F.linear(x, weight)


@functools.cache
def onednn_linear() -> bool:
    """Whether oneDNN's linear op is usable here: it exists, runs and equals ``F.linear`` on a
    small product to float32 rounding (checked once per process)."""
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(37, 70, generator=generator)
        w = torch.randn(19, 70, generator=generator)
        with torch.no_grad():
            got = op(x, w, None, "none", [], "")
            want = F.linear(x, w)
    except (AttributeError, RuntimeError, TypeError):
        return False
    return bool(got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-5))
