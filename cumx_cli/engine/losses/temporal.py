"""The time-domain term: weighted SDR (wSDR) of Choi et al. 2019 (spec §2.3)."""

from __future__ import annotations

import torch

#: The epsilon of both reference implementations; it appears three times in the formula.
EPS = 1e-10


def _cos(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """``<a, b> / (sqrt(eps + |a|^2) sqrt(eps + |b|^2) + eps)`` over the last axis."""
    dot = (a * b).sum(dim=-1)
    norm = torch.sqrt(eps + a.pow(2).sum(dim=-1)) * torch.sqrt(eps + b.pow(2).sum(dim=-1))
    return dot / (norm + eps)


def weighted_sdr(estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor,
                 eps: float = EPS, trim: int = 0) -> torch.Tensor:
    """Per-row wSDR ``-a cos(y_hat, y) - (1 - a) cos(m - y_hat, m - y)``, ``a = |y|^2/(|y|^2+|m-y|^2+eps)``.

    Each row (every leading index: batch item, combination, channel) is its own signal; signals
    are never flattened across channels. All three inputs are cut to the shortest length along
    time, then ``trim`` samples are dropped from both ends (the Sony code trims 200). The loss
    value of the paper is ``1 + mean(rows)``, in [0, 2].

    Shapes:
        estimate, target: (..., time)
        mixture:          (..., time), broadcastable to the others (e.g. a combination axis of 1)
        returns:          (...) per-row values in [-1, 1]
    """
    length = min(estimate.shape[-1], target.shape[-1], mixture.shape[-1])
    sl = slice(trim, length - trim if trim else length)
    y_hat, y, m = estimate[..., sl], target[..., sl], mixture[..., sl]
    n, n_hat = m - y, m - y_hat
    y_energy = y.pow(2).sum(dim=-1)
    alpha = y_energy / (y_energy + n.pow(2).sum(dim=-1) + eps)
    return -alpha * _cos(y_hat, y, eps) - (1 - alpha) * _cos(n_hat, n, eps)
