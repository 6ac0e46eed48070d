"""Shared fixtures: tiny random models, synthetic audio, an isolated environment."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.cumx import save_model

FIXTURES = Path(__file__).parent / "fixtures"
RATE = 44100


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that set ``SCHEDULE_FIRST`` (the README tour, minutes long) run first: with
    ``-n 2 --dist loadfile`` a worker takes them at once instead of after the rest."""
    items.sort(key=lambda item: not getattr(item.module, "SCHEDULE_FIRST", False))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n N``) each worker computes on one thread: N workers with torch's
    default of one thread per core would oversubscribe the cores (subprocesses keep the default)."""
    if hasattr(config, "workerinput"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user cache, no device override, and no network: a test that connects out fails."""
    monkeypatch.setenv("CUMX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CUMX_DEVICE", raising=False)
    monkeypatch.delenv("MUSDB_PATH", raising=False)  # eval/train default their --musdb to it

    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and "/" not in host:
            raise AssertionError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)

    real_getaddrinfo = socket.getaddrinfo

    def local_names_only(host: object, *args: object, **kwargs: object) -> object:
        # no DNS traffic either: a name that is not local fails as an unresolvable one would
        if host not in (None, "127.0.0.1", "localhost", "::1", b"localhost", b"127.0.0.1"):
            raise socket.gaierror(socket.EAI_NONAME, f"test network guard: {host!r} is not local")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", local_names_only)


def tiny_config(**overrides: object) -> ModelConfig:
    """A small full-STFT model: n_fft 4096 like the real one, hidden 8, one LSTM layer."""
    base: dict[str, object] = {"hidden_size": 8, "num_layers": 1}
    base.update(overrides)
    return ModelConfig(**base)  # type: ignore[arg-type]


def random_model(config: ModelConfig, seed: int = 0) -> CrossUMX:
    """A model whose every parameter and running statistic is random (not the default init)."""
    gen = torch.Generator().manual_seed(seed)
    model = CrossUMX(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = name.endswith(("input_scale", "output_scale", "output_mean"))
            if scale or ".bn" in name and name.endswith("weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("input_mean"):
                p.copy_(-0.1 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(1, p.shape[-1])))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


def music(seconds: float, channels: int = 2, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Synthetic stereo music-like audio, (time, channel) float32, peak about 0.6."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
    bass = 0.25 * np.sin(2 * np.pi * 55 * t)
    noise = 0.05 * rng.standard_normal(t.size)
    left = tone + bass + noise
    right = 0.6 * tone + bass + 0.05 * rng.standard_normal(t.size)
    data = np.stack([left, right], axis=1)[:, :channels]
    return data.astype(np.float32)


@pytest.fixture
def tiny_model_path(tmp_path: Path) -> Path:
    """A cumx checkpoint of a tiny random X-UMX model."""
    path = tmp_path / "tiny.pt"
    save_model(random_model(tiny_config()), path)
    return path


@pytest.fixture
def song(tmp_path: Path) -> Path:
    """A 3 s stereo 44.1 kHz 16-bit wav."""
    path = tmp_path / "in" / "song.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, music(3.0), RATE, subtype="PCM_16")
    return path
