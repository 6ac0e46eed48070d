"""``cumx train`` on your own data: ``--data``/``--layout``, derived sources, augmentation flags,
the one-line data errors, ``--resume`` restoring the data settings, and the closing-note runs
(``--layout sources`` and a MUSDB18 ``.stem.mp4`` set holding the real excerpt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from cumx_cli.app import app
from cumx_cli.engine.data.musdb import STEM_STREAMS
from cumx_cli.engine.weights.formats.cumx import load_training_checkpoint
from tests.cli.helpers import TINY
from tests.engine.test_stem_mp4 import example_stem, stem_sources, write_stem_mp4

RATE = 44100


@pytest.fixture(autouse=True)
def _here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSDB_PATH", raising=False)


def run(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def noise(seconds: float, seed: int, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(seconds * RATE), channels))
    return (0.05 * np.cumsum(x, axis=0) / np.sqrt(np.arange(1, x.shape[0] + 1))[:, None]
            + 0.02 * x).astype(np.float32)


def sources_data(root: Path, counts: dict[str, int]) -> Path:
    """``root/{train,valid}/<source>/<k>.flac``: unaligned files of different lengths."""
    for j, (source, count) in enumerate(counts.items()):
        for k in range(count):
            folder = root / ("valid" if k == 0 else "train") / source
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{k:02d}.flac", noise(1.5 + 0.5 * k, 10 * j + k), RATE)
    return root


def lines(result: object) -> list[str]:
    """What the run wrote to stderr, line by line."""
    return list(result.stderr.splitlines())  # type: ignore[attr-defined]


@pytest.mark.slow
def test_layout_sources_trains_two_epochs_and_writes_best(tmp_path: Path) -> None:
    data = sources_data(tmp_path / "data", {"vocals": 4, "drums": 3})
    result = run("train", "--data", data, "--layout", "sources", "--sources", "vocals,drums",
                 "--out", "run", "--epochs", "2", "--polarity", *TINY)
    assert result.exit_code == 0, result.output
    first = lines(result)[0]
    assert first == f"data: {data} (sources layout); validation: the files of {data / 'valid'}"
    history = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
               if x]
    assert [h["epoch"] for h in history] == [1, 2]
    assert (tmp_path / "run" / "best.pt").is_file()
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["data"]["layout"] == "sources" and record["data"]["polarity"] is True


@pytest.mark.slow
def test_stem_mp4_with_the_real_excerpt_trains_two_epochs(tmp_path: Path) -> None:
    real = example_stem()
    train = tmp_path / "musdb" / "train"
    train.mkdir(parents=True)
    shutil.copy(real, train / real.name)
    for n in range(2):
        signals = stem_sources(3.0, seed=n)
        write_stem_mp4(train / f"synth {n}.stem.mp4", [signals[s] for s in STEM_STREAMS])
    result = run("train", "--musdb", tmp_path / "musdb", "--out", "run", "--epochs", "2", *TINY)
    assert result.exit_code == 0, result.output
    said = lines(result)
    assert said[0].startswith(f"data: {tmp_path / 'musdb'} (MUSDB18 .stem.mp4 layout); "
                               "validation: 1 of 3 tracks (10%, evenly spaced by name")
    assert "2 training and 1 validation tracks" in said[1]
    assert (tmp_path / "run" / "best.pt").is_file()
    assert [json.loads(x)["epoch"] for x in
            (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_a_derived_source_trains_and_separates_two_stems(tmp_path: Path) -> None:
    made = run("train", "--synthetic-data", "data", "--out", "run", "--epochs", "1",
               "--sources", "vocals,accompaniment=drums+bass+other", *TINY)
    assert made.exit_code == 0, made.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["sources"] == ["vocals", "accompaniment"]
    assert config["data"]["derived"] == {"accompaniment": ["drums", "bass", "other"]}
    sep = run("separate", tmp_path / "data" / "test" / "synth-test-000" / "mixture.wav", "-m",
              "run/best.pt", "-o", "stems", "-q")
    assert sep.exit_code == 0, sep.output
    assert sorted(p.name for p in (tmp_path / "stems" / "mixture").iterdir()) == [
        "accompaniment.wav", "vocals.wav"]


@pytest.mark.slow
def test_resume_restores_the_data_settings_exactly(tmp_path: Path) -> None:
    data = sources_data(tmp_path / "data", {"vocals": 3, "drums": 3})
    flags = ["--data", data, "--sources", "vocals,drums", "--polarity", "--no-channel-swap",
             "--gain-min", "0.5", "--gain-max", "1.0", *TINY]
    assert run("train", *flags, "--out", "straight", "--epochs", "2").exit_code == 0
    assert run("train", *flags, "--out", "split", "--epochs", "1").exit_code == 0
    resumed = run("train", "--resume", "split", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    a = load_training_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_training_checkpoint(tmp_path / "split" / "last.pt")
    assert a["train_config"]["data"] == b["train_config"]["data"]
    assert b["train_config"]["data"]["polarity"] is True
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--data", "nowhere"], 1, "nowhere: no 'train' folder"),
    (["--epochs", "1"], 2, "no data set: --data/--musdb ROOT is required"),
    (["--data", "x", "--layout", "folders"], 2, "Invalid value for '--layout'"),
    (["--data", "x", "--sources", "vocals,rest=drums+vocals"], 2,
     "--sources item 'rest=drums+vocals': stem 'vocals' is used in 'vocals' and 'rest'"),
    (["--data", "x", "--valid-share", "1.5"], 2, "--valid-share must be between 0 and 1"),
    (["--data", "x", "--gain-min", "2"], 2, "--gain-min must be at least 0 and at most gain_max"),
])
def test_usage_errors(args: list[str], code: int, message: str) -> None:
    result = run("train", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr


def test_data_errors_are_one_line_before_any_work(tmp_path: Path) -> None:
    data = sources_data(tmp_path / "data", {"vocals": 3, "drums": 3})
    (data / "train" / "bass").mkdir()
    result = run("train", "--data", data, "--sources", "vocals,bass", "--out", "run", *TINY)
    assert result.exit_code == 1 and lines(result) == [
        f"error: {data / 'train' / 'bass'}: no audio files (.wav, .flac, .mp3, ...)"], result.output
    assert not (tmp_path / "run").exists()
    odd = data / "train" / "drums" / "02.flac"
    sf.write(odd, noise(1.0, 0), 22050)
    result = run("train", "--data", data, "--sources", "vocals,drums", "--out", "run", *TINY)
    assert result.exit_code == 1 and len(lines(result)) == 1
    assert f"{odd} is at 22050 Hz and the rest of {data} at 44100 Hz" in result.stderr
    assert "ffmpeg -i" in result.stderr and not (tmp_path / "run").exists()


def test_every_data_field_has_a_flag() -> None:
    """Each ``DataConfig`` field (but ``derived``, written in ``--sources``) maps to a real
    option, so the engine's errors read as flags."""
    import dataclasses

    import typer

    from cumx_cli.commands.train import FLAGS
    from cumx_cli.engine.config import DataConfig

    fields = {f.name for f in dataclasses.fields(DataConfig)} - {"derived"}
    assert fields <= set(FLAGS)
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    options = {o for p in command.params for opt in p.opts for o in opt.split("/")}
    assert {FLAGS[f] for f in fields} <= options and {"--data", "--musdb"} <= options
