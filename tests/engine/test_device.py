"""Device names: ``auto`` and the checks that name what to use instead."""

from __future__ import annotations

import pytest
import torch

from cumx_cli.engine import device as device_module
from cumx_cli.engine.device import resolve_device
from cumx_cli.engine.errors import ConfigError


def _machine(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(device_module, "_mps_available", lambda: mps)


@pytest.mark.parametrize(("cuda", "mps", "float64", "expected"), [
    (True, True, False, "cuda"),
    (False, True, False, "mps"),
    (False, True, True, "cpu"),  # MPS has no float64: BSSEval runs on the CPU
    (False, False, False, "cpu"),
])
def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool,
                                           float64: bool, expected: str) -> None:
    _machine(monkeypatch, cuda, mps)
    assert resolve_device("auto", float64=float64).type == expected


@pytest.mark.parametrize(("name", "float64", "message"), [
    ("tpu9", False, "unknown device 'tpu9'"),
    ("cuda", False, "CUDA is not available here; use --device cpu"),
    ("mps", False, "MPS is not available here"),
    ("mps", True, "BSSEval needs float64, which MPS lacks"),
])
def test_unusable_devices_are_config_errors(monkeypatch: pytest.MonkeyPatch, name: str,
                                            float64: bool, message: str) -> None:
    _machine(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ConfigError, match=message) as caught:
        resolve_device(name, float64=float64)
    assert caught.value.field == "device"


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
