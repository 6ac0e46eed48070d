"""The Multi-Domain Loss with the Combination Loss: ``L_F + alpha * L_T`` over source subsets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.losses.combination import combination_matrix
from cumx_cli.engine.losses.spectral import spectral_mse
from cumx_cli.engine.losses.temporal import EPS, weighted_sdr


@dataclass(frozen=True)
class LossTerms:
    """The total and its two terms (``time`` is 0 without the time-domain term)."""

    total: torch.Tensor
    freq: torch.Tensor
    time: torch.Tensor


class MultiDomainLoss(nn.Module):
    """MDL + CL of the paper, for any model that outputs per-source magnitudes or waveforms.

    * ``L_F``: for each combination ``c``, the MSE between the sum of the estimated magnitudes of
      its sources and the sum of their true magnitudes; averaged over combinations.
    * ``L_T`` (``multidomain``): ``1 + mean`` over (batch, combination, channel) rows of the wSDR
      between the sum of the estimated waveforms of ``c``'s sources and the sum of their true
      waveforms, with the mixture ``m`` giving the noise terms.
    * ``combine`` (CL): the combinations are every proper non-empty subset of the sources (14
      for 4); without it, the single sources only.

    The iSTFT is linear, so each source's waveform is made once and combinations are formed
    by summation; this equals computing the iSTFT per combination (tests/engine/test_losses.py).

    The recipe's values are ``TrainConfig``'s fields: build it with :meth:`from_config`.

    Args:
        alpha: weight of the time-domain term (``TrainConfig.alpha``).
        multidomain: include the time-domain term.
        combine: use the combinations (CL) instead of single sources.
        trim: samples dropped at both ends inside the wSDR (``TrainConfig.wsdr_trim``; Sony
            trims 200, asteroid 0).
        eps: the wSDR's epsilon (both reference codes': :data:`temporal.EPS`).
    """

    def __init__(self, *, alpha: float, multidomain: bool, combine: bool, trim: int,
                 eps: float = EPS) -> None:
        super().__init__()
        self.alpha, self.multidomain, self.combine = alpha, multidomain, combine
        self.trim, self.eps = trim, eps

    @classmethod
    def from_config(cls, config: TrainConfig) -> MultiDomainLoss:
        """The loss of a training recipe (``alpha``, ``multidomain``, ``combine``, ``wsdr_trim``)."""
        return cls(alpha=config.alpha, multidomain=config.multidomain, combine=config.combine,
                   trim=config.wsdr_trim)

    def forward(self, est_mag: torch.Tensor, target_mag: torch.Tensor,
                est_wave: torch.Tensor | None = None, target_wave: torch.Tensor | None = None,
                mixture: torch.Tensor | None = None) -> LossTerms:
        """Compute the loss.

        Shapes:
            est_mag, target_mag:  (batch, source, channel, freq, frame)
            est_wave, target_wave: (batch, source, channel, time) (only with ``multidomain``)
            mixture:              (batch, channel, time) (only with ``multidomain``)
            returns: scalars
        """
        combos = combination_matrix(est_mag.shape[1], self.combine, est_mag.device)
        c_mag = combos.to(est_mag.dtype)
        freq = spectral_mse(torch.einsum("cs,bs...->bc...", c_mag, est_mag),
                            torch.einsum("cs,bs...->bc...", c_mag, target_mag))
        if not self.multidomain:
            return LossTerms(freq, freq, torch.zeros_like(freq))
        if est_wave is None or target_wave is None or mixture is None:
            raise ValueError("the multi-domain loss needs est_wave, target_wave and mixture")
        length = min(est_wave.shape[-1], target_wave.shape[-1], mixture.shape[-1])
        c_wave = combos.to(est_wave.dtype)
        est_c = torch.einsum("cs,bs...->bc...", c_wave, est_wave[..., :length])
        tgt_c = torch.einsum("cs,bs...->bc...", c_wave, target_wave[..., :length])
        rows = weighted_sdr(est_c, tgt_c, mixture[:, None, :, :length], self.eps, self.trim)
        time = 1.0 + rows.mean()
        return LossTerms(freq + self.alpha * time, freq, time)
