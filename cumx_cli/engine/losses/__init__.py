"""The paper's training losses, usable with any separation model.

* :func:`spectral_mse`: magnitude MSE (frequency domain);
* :func:`weighted_sdr`: the weighted SDR of Choi et al. (time domain);
* :func:`source_combinations`: the combinations of the Combination Loss (CL);
* :class:`MultiDomainLoss`: ``L_F + alpha * L_T`` over the single sources or, with CL, over every
  proper non-empty subset of them (spec §2; Sawata et al., ICASSP 2021).
"""

from cumx_cli.engine.losses.combination import source_combinations
from cumx_cli.engine.losses.multidomain import LossTerms, MultiDomainLoss
from cumx_cli.engine.losses.spectral import spectral_mse
from cumx_cli.engine.losses.temporal import weighted_sdr

__all__ = ["LossTerms", "MultiDomainLoss", "source_combinations", "spectral_mse", "weighted_sdr"]
