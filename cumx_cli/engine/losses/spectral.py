"""The frequency-domain term: mean squared error between magnitudes (spec §2.2)."""

from __future__ import annotations

import torch


def spectral_mse(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over every element of ``(estimate - target)^2``.

    For the Combination Loss, pass sums of masked magnitudes and sums of the sources' own
    magnitudes (not the magnitude of the summed waveforms: both reference codes do this).

    Shapes:
        estimate, target: any equal shapes, e.g. (batch, combination, channel, freq, frame)
        returns: () scalar
    """
    return torch.mean((estimate - target) ** 2)
