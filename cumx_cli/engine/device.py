"""The one place where a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) becomes a
``torch.device``: separation, training and evaluation all resolve theirs here, at call time (never
at import), and refuse a device this machine lacks with a message that says what to use instead.
"""

from __future__ import annotations

import torch

from cumx_cli.engine.errors import ConfigError


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str, *, float64: bool = False) -> torch.device:
    """The device called ``name``, checked against this machine.

    ``auto`` picks CUDA, then Apple MPS, then the CPU. ``float64`` is for work that needs double
    precision (BSSEval): ``auto`` then never picks MPS, which has no float64, and ``mps`` is an
    error.

    Raises:
        ConfigError: an unknown name, or a device this machine does not have (``field`` is
            ``device``).
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() and not float64 else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps",
                          field="device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but CUDA is not available here; use "
                          "--device cpu", field="device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                          "device(s)", field="device")
    if device.type == "mps" and float64:
        raise ConfigError("BSSEval needs float64, which MPS lacks; use --device cpu", field="device")
    if device.type == "mps" and not _mps_available():
        raise ConfigError("--device mps was asked for, but MPS is not available here; use "
                          "--device cpu", field="device")
    return device
