"""``cumx train --init``: fine-tune a published name or any checkpoint ``separate`` reads, with
other sources; its errors; a fresh optimizer; the run's record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumx_cli.engine.weights.resolver import load_model
from tests.cli.helpers import TINY, cumx, show
from tests.conftest import FIXTURES
from tests.fake_zenodo import FakeZenodo
from tests.synthetic_musdb import karaoke_data

#: ``train`` options for a short run that set no size (the sizes come from ``--init``).
SHORT = ["--seq-dur", "1", "--samples-per-track", "2", "--batch-size", "2", "--epochs", "1",
         "--device", "cpu"]
KARAOKE = ("vocals", "accompaniment")


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def karaoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic tracks (2 training, 1 validation, 1 test; 3 s) whose training tracks also
    hold ``accompaniment.wav`` = drums + bass + other."""
    return karaoke_data(tmp_path_factory.mktemp("karaoke"))


def _separates_two_stems(karaoke: Path, model: Path) -> None:
    mixture = karaoke / "test" / "synth-test-000" / "mixture.wav"
    result = cumx("separate", mixture, "--model", model, "-o", "stems", "-q")
    assert result.exit_code == 0, show(result)
    assert {p.name for p in Path("stems", "mixture").iterdir()} == {"vocals.wav", "accompaniment.wav"}


@pytest.mark.parametrize("init", ["xumx", pytest.param("umx-folder", marks=pytest.mark.slow),
                                  pytest.param("cumx-pt", marks=pytest.mark.slow)])
def test_init_trains_two_sources_that_separate(init: str, karaoke: Path, tiny_model_path: Path,
                                               server: FakeZenodo) -> None:
    """A published name (downloaded from the fake Zenodo and verified, as ``separate`` does),
    an Open-Unmix folder and a cumx ``.pt``: each trains a two-source model from its networks
    (its ``accompaniment`` a stem of the tracks, or for ``xumx`` the sum of three)."""
    spec = {"xumx": "xumx", "umx-folder": str(FIXTURES / "peers" / "umx"),
            "cumx-pt": str(tiny_model_path)}[init]
    base = load_model(FIXTURES / "peers" / "xumx_asteroid.pth") if init == "xumx" else load_model(Path(spec))
    # the README's karaoke example for the published name: accompaniment summed from the stems
    sources = "vocals,accompaniment=drums+bass+other" if init == "xumx" else "vocals,accompaniment"
    result = cumx("train", "--init", spec, "--sources", sources, "--musdb", karaoke, "--out", "run",
                  *SHORT)
    assert result.exit_code == 0, show(result)
    assert "fine-tuning" in result.stderr and \
        "kept vocals; new accompaniment (a copy of vocals); dropped bass, drums, other" in result.stderr
    trained = load_model(Path("run", "best.pt"))
    assert trained.sources == KARAOKE
    for field in ("hidden_size", "num_layers", "bridge", "n_fft", "max_bin", "sample_rate"):
        assert getattr(trained.config, field) == getattr(base.config, field), field
    record = json.loads(Path("run", "config.json").read_text())
    expected = spec if init == "xumx" else str(Path(spec).resolve())
    assert record["init"] == expected and record["init_from"]["model"] == expected
    assert record["init_from"]["dropped"] == ["bass", "drums", "other"]
    _separates_two_stems(karaoke, Path("run", "best.pt"))


@pytest.mark.slow
def test_init_from_a_run_starts_a_fresh_optimizer_and_count(karaoke: Path) -> None:
    """A run's own ``best.pt`` as ``--init``: epochs count from 1 again, the learning rate is
    the new ``--lr``, the sources are the model's when ``--sources`` is not given, and
    ``--recompute-stats`` is recorded."""
    first = cumx("train", "--musdb", karaoke, "--out", "a", "--sources", "vocals,accompaniment",
                 *TINY, "--epochs", "2", "--lr", "0.01")
    assert first.exit_code == 0, show(first)
    again = cumx("train", "--init", "a/best.pt", "--musdb", karaoke, "--out", "b", *SHORT,
                 "--lr", "0.0005", "--recompute-stats", "--hidden-size", "8")
    assert again.exit_code == 0, show(again)
    (line,) = Path("b", "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["epoch"] == 1 and json.loads(line)["lr"] == 0.0005
    record = json.loads(Path("b", "config.json").read_text())
    assert record["init_from"]["kept"] == list(KARAOKE)
    assert record["init_from"]["input_scaling"] == "recomputed"
    assert "input statistics" in again.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--hidden-size", "64"], 2, "--hidden-size 64 contradicts the model to fine-tune "),
    (["--nb-layers", "1"], 2, "--nb-layers 1 contradicts the model to fine-tune ("),
    (["--no-bridge"], 2, "--bridge off contradicts the model to fine-tune ("),
    (["--sources", "vocals"], 2, "--sources must name 2 to 8 sources, got 1 (vocals)"),
])
def test_contradicting_flags_are_one_line(args: list[str], code: int, message: str) -> None:
    fixture = FIXTURES / "peers" / "xumx_asteroid.pth"
    result = cumx("train", "--init", fixture, "--musdb", "x", *args)
    assert result.exit_code == code, show(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], show(result)
    if "contradicts" in message:
        assert f"({fixture} has " in lines[0] and "leave " in lines[0]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--init", "nowhere.pt", "--musdb", "x"], 1, "nowhere.pt: no such model file or folder"),
    (["--init", "xumx", "--offline", "--musdb", "x"], 1, "cumx download-weights xumx"),
    (["--recompute-stats", "--musdb", "x"], 2, "--recompute-stats needs --init"),
    (["--resume", "run", "--init", "xumx"], 2, "--init starts a new run; --resume run continues"),
])
def test_init_errors_are_one_line(args: list[str], code: int, message: str) -> None:
    result = cumx("train", *args)
    assert result.exit_code == code, show(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], show(result)
    assert "Traceback" not in result.output


def test_no_data_is_refused_before_the_model_downloads(server: FakeZenodo) -> None:
    result = cumx("train", "--init", "xumx")
    assert result.exit_code == 2 and "ROOT is required" in result.stderr, show(result)
    assert server.requests == []
