"""Training: statistics, exact resume (also of older run folders), checkpoints, and DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import ModelConfig, TrainConfig
from cumx_cli.engine.data.musdb import load_tracks
from cumx_cli.engine.data.sampler import RandomMixDataset
from cumx_cli.engine.errors import DatasetError
from cumx_cli.engine.training.loop import fit
from cumx_cli.engine.training.run_folder import load_run_config
from cumx_cli.engine.training.stats import input_statistics
from cumx_cli.engine.weights.resolver import load_model

SMALL = ModelConfig(hidden_size=8, num_layers=1)
TINY = {"model": SMALL, "seq_seconds": 1.0, "samples_per_track": 2, "batch_size": 2,
        "valid_seconds": 10.0, "device": "cpu"}
FOUR = ("bass", "drums", "vocals", "other")


@pytest.fixture
def data(synthetic_musdb: Path) -> Path:
    return synthetic_musdb


def test_a_batch_larger_than_an_epoch_is_refused_before_any_file(data: Path,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="larger than an epoch"):
        fit(TrainConfig(**{**TINY, "batch_size": 64}), data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_examples_depend_only_on_seed_epoch_and_index(data: Path) -> None:
    tracks = load_tracks(data, "train", FOUR)
    ds = RandomMixDataset(tracks, FOUR, 22050, 4, seed=1)
    ds.set_epoch(3)
    a = ds[2]
    ds.set_epoch(1)
    _ = ds[0]
    ds.set_epoch(3)
    b = ds[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.allclose(a[0], a[1].sum(0))
    peak = a[1].abs().amax(dim=(1, 2))
    assert (peak > 0).all()


def test_statistics_match_numpy_and_are_cached(data: Path, tmp_path: Path) -> None:
    tracks = load_tracks(data, "train", FOUR)
    mean, std = input_statistics(tracks, 4096, 1024, cache_dir=tmp_path)
    frames = []
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(4096) / 4096)
    for t in tracks:
        x = t.read("mixture").numpy().astype(np.float64)
        padded = np.pad(x, ((0, 0), (2048, 2048)), mode="reflect")
        for k in range(1 + x.shape[1] // 1024):
            spec = np.abs(np.fft.rfft(padded[:, k * 1024 : k * 1024 + 4096] * window, axis=1))
            frames.append(spec.mean(axis=0))
    frames = np.array(frames)
    ref_std = np.maximum(frames.std(axis=0), 1e-4 * frames.std(axis=0).max())
    np.testing.assert_allclose(mean.numpy(), frames.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), ref_std, rtol=1e-3, atol=1e-6)
    assert len(list((tmp_path / "stats").glob("*.pt"))) == 1
    again = input_statistics(tracks, 4096, 1024, cache_dir=tmp_path)
    assert torch.equal(again[0], mean)


def _losses(run: Path) -> list[tuple[float, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(json.loads(x)["train_loss"], json.loads(x)["valid_loss"]) for x in lines]


def _as_written_by_older_cumx(last: Path) -> None:
    """Rewrite a checkpoint's ``train_config`` flat, as cumx wrote it before ``TrainConfig``
    held a ``ModelConfig``: ``sources``, ``hidden_size``, ``num_layers``, ``bridge`` at the top."""
    stored = torch.load(last, weights_only=True)
    config = dict(stored["train_config"])
    model = config.pop("model")
    config.update({k: model[k] for k in ("sources", "hidden_size", "num_layers", "bridge")})
    stored["train_config"] = config
    torch.save(stored, last)


@pytest.mark.slow
def test_resume_continues_exactly(data: Path, tmp_path: Path) -> None:
    """Also from a run folder of an older cumx (its flat config)."""
    config = TrainConfig(**{**TINY, "epochs": 3})
    straight = fit(config, data, tmp_path / "a")
    first = fit(config, data, tmp_path / "b", stop_after=1)
    assert len(first) == 1
    _as_written_by_older_cumx(tmp_path / "b" / "last.pt")
    assert load_run_config(tmp_path / "b") == config
    rest = fit(load_run_config(tmp_path / "b"), data, tmp_path / "b", resume=True)
    assert [r.epoch for r in rest] == [2, 3]
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert [r.train_loss for r in straight] == [r.train_loss for r in first + rest]
    for name in ("last.pt", "best.pt", "config.json", "curves.png"):
        assert (tmp_path / "b" / name).is_file()
    assert (tmp_path / "b" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_load_for_separation(data: Path, tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "epochs": 1, "model": dataclasses.replace(SMALL, bridge=False),
                            "multidomain": False})
    fit(config, data, tmp_path / "r")
    model = load_model(tmp_path / "r" / "last.pt")
    assert not model.config.bridge and model.config.hidden_size == 8
    stored = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert TrainConfig.from_dict(stored["train_config"]) == config
    assert stored["training"]["epoch"] == 1


def test_refuses_to_overwrite_a_run(data: Path, tmp_path: Path) -> None:
    fit(TrainConfig(**{**TINY, "epochs": 1}), data, tmp_path / "r")
    from cumx_cli.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="--resume"):
        fit(TrainConfig(**{**TINY, "epochs": 1}), data, tmp_path / "r")


@pytest.mark.slow
def test_two_process_ddp_on_cpu(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUMX_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", "29517", "-m", "cumx_cli", "train", "--musdb", str(data), "--out",
           str(out), "--hidden-size", "8", "--nb-layers", "1", "--seq-dur", "1",
           "--samples-per-track", "4", "--batch-size", "2", "--epochs", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone wrote
    assert load_model(out / "best.pt").config.hidden_size == 8


@pytest.mark.slow
def test_worker_processes_give_the_same_epochs(data: Path, tmp_path: Path) -> None:
    base = {**TINY, "epochs": 2}
    fit(TrainConfig(**base), data, tmp_path / "w0")
    fit(TrainConfig(**{**base, "workers": 2}), data, tmp_path / "w2")
    assert _losses(tmp_path / "w0") == _losses(tmp_path / "w2")


@pytest.mark.slow
def test_a_diverging_loss_stops_before_the_weights_change(data: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN loss raises TrainingError before the optimizer steps: the saved run is untouched,
    and once the cause is gone ``resume`` goes on as if nothing had happened."""
    from cumx_cli.engine.errors import TrainingError
    from cumx_cli.engine.training import loop

    config = TrainConfig(**{**TINY, "epochs": 2})
    straight = fit(config, data, tmp_path / "a")
    fit(config, data, tmp_path / "b", stop_after=1)
    saved = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}

    real_loss, calls = loop._loss, []

    def nan_on_second_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        terms, wave = real_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            terms = dataclasses.replace(terms, total=terms.total * float("nan"))
        return terms, wave

    monkeypatch.setattr(loop, "_loss", nan_on_second_step)
    with pytest.raises(TrainingError, match=r"^the training loss became nan at step 2 of the "):
        fit(config, data, tmp_path / "b", resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == saved
    monkeypatch.setattr(loop, "_loss", real_loss)
    rest = fit(config, data, tmp_path / "b", resume=True)
    metrics = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [r.train_loss for r in straight] == [json.loads(x)["train_loss"] for x in metrics]
    assert [r.epoch for r in rest] == [2]


@pytest.mark.parametrize("workers", [0, 1])
def test_non_finite_samples_in_a_stem_stop_training(data: Path, tmp_path: Path,
                                                    workers: int) -> None:
    """An excerpt holding a NaN is refused with one line naming the file and the time, also
    when it is read in a worker process (not the worker's traceback)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data, root)
    vocals = root / "train" / "synth-train-000" / "vocals.wav"
    audio, rate = sf.read(vocals, dtype="float32")
    audio[:, 0] = np.inf  # every excerpt of this stem holds it
    audio[:, 1] = np.nan
    sf.write(vocals, audio, rate, subtype="FLOAT")
    with pytest.raises(DatasetError) as caught:
        fit(TrainConfig(**{**TINY, "epochs": 1, "workers": workers}), root, tmp_path / "run")
    message = str(caught.value)
    assert message.startswith(f"{vocals}: contains NaN or infinite samples (first at ")
    assert "\n" not in message


def test_synthetic_style_b_is_another_data_set(tmp_path: Path) -> None:
    """``style="b"``: the same stem names, mixtures that are the sums of the stems, written the
    same for the same seed, and a brighter voice than style "a" (spectral centroid)."""
    from cumx_cli.engine.data.synth import generate_synthetic_musdb

    def centroid(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x.mean(axis=1)))
        return float((np.fft.rfftfreq(x.shape[0], 1 / 44100) * spectrum).sum() / spectrum.sum())

    paths = {}
    for name, style in (("a", "a"), ("b", "b"), ("b2", "b")):
        generate_synthetic_musdb(tmp_path / name, num_train=1, num_valid=0, num_test=0,
                                 seconds=1.0, style=style)  # type: ignore[arg-type]
        paths[name] = tmp_path / name / "train" / "synth-train-000"
    stems = {s: sf.read(paths["b"] / f"{s}.wav", dtype="float32")[0] for s in FOUR}
    mixture = sf.read(paths["b"] / "mixture.wav", dtype="float32")[0]
    np.testing.assert_allclose(mixture, sum(stems.values()), atol=1e-6)
    assert all((paths["b"] / f"{s}.wav").read_bytes() == (paths["b2"] / f"{s}.wav").read_bytes()
               for s in FOUR)
    vocals_a = sf.read(paths["a"] / "vocals.wav", dtype="float32")[0]
    assert centroid(stems["vocals"]) > 1.3 * centroid(vocals_a)
