"""Channel conversion between a file's channel count and a model's: mono is duplicated, more
channels are averaged (and the stems go back the same way)."""

from __future__ import annotations

import torch


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Duplicate mono or average stereo so that ``x`` has ``channels`` (a view where possible).

    Shapes:
        x:       (..., channel, time)
        returns: (..., channels, time)
    """
    if x.shape[-2] == channels:
        return x
    if x.shape[-2] == 1:
        return x.expand(*x.shape[:-2], channels, x.shape[-1])
    return x.mean(dim=-2, keepdim=True)
