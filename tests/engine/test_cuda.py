"""The CUDA code paths, on a GPU: separation, training (fp32 and bf16 autocast), BSSEval.

Every test is marked ``gpu`` and skipped without CUDA (``benchmarks/gpu_check.py`` runs them with
``pytest -m gpu``). Each compares the GPU against an independent result: the same computation on
the CPU, or museval. The CPU twins of these paths are tested everywhere else; CUDA differs by
rounding (TF32 in cuDNN's LSTMs, other FFT and reduction orders), hence the tolerances.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.api import separate_file
from cumx_cli.engine.config import InferenceConfig, ModelConfig, TrainConfig
from cumx_cli.engine.device import resolve_device
from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.evaluation.bsseval import bss_eval_v4
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.training.loop import fit
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import RATE, music, random_model, tiny_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = torch.device("cuda")
#: Training on synthetic data, tiny (as tests/engine/test_training.py).
TINY = {"model": ModelConfig(hidden_size=8, num_layers=1), "seq_seconds": 1.0,
        "samples_per_track": 2, "batch_size": 2, "valid_seconds": 10.0, "epochs": 1}


def _snr(reference: torch.Tensor, other: torch.Tensor) -> float:
    error = (reference.double() - other.double()).pow(2).sum()
    return float(10 * torch.log10(reference.double().pow(2).sum() / error.clamp_min(1e-30)))


def test_auto_picks_cuda_and_a_missing_index_is_refused() -> None:
    assert resolve_device("auto").type == "cuda"
    index = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"^--device cuda:{index}: this machine has {index} CUDA"):
        resolve_device(f"cuda:{index}")


@pytest.mark.parametrize("bridge", [True, False])
def test_separation_on_cuda_matches_the_cpu(bridge: bool) -> None:
    """Chunked and batched, with EM: the stems on CUDA are the CPU's within rounding."""
    model = random_model(tiny_config(bridge=bridge))
    x = torch.from_numpy(np.stack([music(5.0, seed=1).T, music(5.0, seed=2).T]))
    config = InferenceConfig(chunk_seconds=1.3, overlap_seconds=0.2, batch_size=3)
    cpu = Separator(model, config, device=torch.device("cpu")).separate(x)
    gpu = Separator(random_model(tiny_config(bridge=bridge)), config, device=CUDA).separate(x)
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32 and gpu.shape == cpu.shape
    assert _snr(cpu, gpu) > 40


def test_a_file_separated_on_cuda_equals_the_cpu_stems(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, music(4.0), RATE, subtype="FLOAT")
    model = random_model(tiny_config())
    written = {}
    for device in ("cpu", "cuda"):
        separator = Separator(model, InferenceConfig(chunk_seconds=1.5), device=torch.device(device))
        written[device] = separate_file(song, tmp_path / device, model=separator)
    assert sorted(written["cuda"]) == sorted(written["cpu"]) == sorted(model.sources)
    for source, path in written["cpu"].items():
        cpu = torch.from_numpy(sf.read(path, dtype="float32")[0])
        gpu = torch.from_numpy(sf.read(written["cuda"][source], dtype="float32")[0])
        assert gpu.shape == cpu.shape and _snr(cpu, gpu) > 40, source


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_on_cuda_follows_the_cpu_and_bf16_stays_close(synthetic_musdb: Path,
                                                               tmp_path: Path) -> None:
    """One epoch of the recipe (MDL + CL, bridged) on CUDA in fp32 and with bf16 autocast."""
    runs = {}
    for name, device, amp in (("cpu", "cpu", None), ("fp32", "cuda", None), ("bf16", "cuda", "bf16")):
        config = TrainConfig(**{**TINY, "device": device, "amp": amp})
        fit(config, synthetic_musdb, tmp_path / name)
        runs[name] = _losses(tmp_path / name)
    assert all(np.isfinite(v).all() for v in runs.values())
    assert runs["fp32"] == pytest.approx(runs["cpu"], rel=1e-2)
    assert runs["bf16"] == pytest.approx(runs["cpu"], rel=0.1)
    model = load_model(tmp_path / "bf16" / "best.pt")  # saved from the GPU, loads on the CPU
    assert next(model.parameters()).device.type == "cpu"
    assert dataclasses.asdict(model.config)["hidden_size"] == 8


def test_bsseval_on_cuda_matches_museval() -> None:
    from tests.synthetic_musdb import estimates, museval_metrics, sources

    metrics = museval_metrics()  # skips without museval
    refs = sources(4, 2, int(2.5 * RATE), seed=5)
    ests = estimates(refs, seed=6)
    expected = metrics.bss_eval(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), window=RATE,
                                hop=RATE, filters_len=512, framewise_filters=False,
                                bsseval_sources_version=False)[:4]
    got = bss_eval_v4(torch.from_numpy(refs), torch.from_numpy(ests), window=RATE, hop=RATE,
                      filters_len=512, device=CUDA)
    assert got.sdr.device.type == "cpu"
    for name, a, b in zip(("SDR", "ISR", "SIR", "SAR"), expected,
                          (got.sdr, got.isr, got.sir, got.sar), strict=True):
        assert np.allclose(a, b.numpy(), atol=1e-6, rtol=0, equal_nan=True), name
