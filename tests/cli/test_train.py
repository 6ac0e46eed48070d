"""``cumx train`` from the command line: end to end on synthetic data, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cumx_cli.app import app
from tests.cli.helpers import TINY


@pytest.fixture(autouse=True)
def _reset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_synthetic_end_to_end_and_resume(tmp_path: Path) -> None:
    result = run("train", "--synthetic-data", "data", "--out", "run", "--epochs", "1", *TINY)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "split.json").is_file()
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"last.pt", "best.pt", "metrics.jsonl",
                                                              "config.json", "curves.png"}
    again = run("train", "--musdb", "data", "--out", "run", "--epochs", "1", *TINY)
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = run("train", "--resume", "run", "--epochs", "2")  # the run knows its data
    assert resumed.exit_code == 0, resumed.output
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    sep = run("separate", tmp_path / "data" / "test" / "synth-test-000" / "mixture.wav", "-m",
              "run/best.pt", "-o", "stems", "-q")
    assert sep.exit_code == 0, sep.output
    assert len(list((tmp_path / "stems" / "mixture").glob("*.wav"))) == 4


@pytest.mark.slow
def test_resume_uses_the_recorded_data_and_refuses_other_data(tmp_path: Path) -> None:
    result = run("train", "--synthetic-data", "data", "--out", "run", "--epochs", "1", *TINY)
    assert result.exit_code == 0, result.output
    config = tmp_path / "run" / "config.json"
    assert json.loads(config.read_text())["data_root"] == str((tmp_path / "data").resolve())
    (tmp_path / "other" / "train").mkdir(parents=True)
    other = run("train", "--resume", "run", "--musdb", "other", "--epochs", "2")
    lines = other.stderr.strip().splitlines()
    assert other.exit_code == 2 and len(lines) == 1, other.output
    assert "--musdb other" in lines[0] and str((tmp_path / "data").resolve()) in lines[0]
    same = run("train", "--resume", "run", "--musdb", tmp_path / "data" / ".." / "data",
               "--epochs", "2")
    assert same.exit_code == 0, same.output
    # A run folder of an older cumx records no data: --musdb is still needed, and says so.
    record = json.loads(config.read_text())
    del record["data_root"]
    config.write_text(json.dumps(record))
    old = run("train", "--resume", "run", "--epochs", "3")
    lines = old.stderr.strip().splitlines()
    assert old.exit_code == 2 and len(lines) == 1 and "--musdb ROOT" in lines[0], old.output
    assert run("train", "--resume", "run", "--musdb", "data", "--epochs", "3").exit_code == 0
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--musdb", "nowhere"], 1, "no 'train' folder"),
    (["--epochs", "1"], 2, "--musdb ROOT is required"),
    (["--musdb", "x", "--synthetic-data", "y"], 2, "not both"),
    (["--musdb", "x", "--batch-size", "0"], 2, "--batch-size must be at least 1"),
    (["--musdb", "x", "--amp", "fp8"], 2, "--amp must be bf16"),
    (["--musdb", "x", "--nb-layers", "0"], 2, "--nb-layers must be at least 1, got 0"),
    (["--musdb", "x", "--hidden-size", "7"], 2, "--hidden-size must be even for a bidirectional"),
    (["--musdb", "x", "--seq-dur", "0"], 2, "--seq-dur must be positive"),
    (["--musdb", "x", "--sources", ","], 2, "--sources must name 2 to 8 sources, got 0"),
    (["--musdb", "x", "--sources", ",".join("abcdefghi")], 2,
     "--sources must name 2 to 8 sources, got 9 (a, b, c, d, e, f, g, h, i)"),
    (["--resume", "nothing-here"], 1, "no last.pt"),
])
def test_errors_are_one_line(args: list[str], code: int, message: str) -> None:
    result = run("train", *args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_resume_from_a_checkpoint_of_the_wrong_format(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes((FIXTURES / "peers" / "xumx_asteroid.pth").read_bytes())
    result = run("train", "--resume", "run")
    assert result.exit_code == 1 and "not a cumx training checkpoint" in result.stderr, result.output
    (tmp_path / "run" / "last.pt").write_text("garbage")
    result = run("train", "--resume", "run")
    assert result.exit_code == 1 and "not a PyTorch checkpoint" in result.stderr, result.output


def test_flags_name_real_fields_and_options() -> None:
    """Every field of the engine's errors maps to an option ``train`` really has."""
    import dataclasses

    import typer

    from cumx_cli.commands.train import FLAGS
    from cumx_cli.engine.config import DataConfig, ModelConfig, TrainConfig

    fields = {f.name for c in (TrainConfig, ModelConfig, DataConfig) for f in dataclasses.fields(c)}
    assert set(FLAGS) <= fields
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    options = {o.split("/")[0] for p in command.params for o in p.opts}
    assert set(FLAGS.values()) <= options


@pytest.mark.slow
def test_statistics_are_cached_under_the_cache_root(tmp_path: Path) -> None:
    result = run("train", "--synthetic-data", "data", "--out", "run", "--epochs", "1",
                 "--cache-dir", "root", *TINY)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "root" / "stats").glob("*.pt"))) == 1


def test_resume_data_root_when_the_recorded_data_moved(tmp_path: Path) -> None:
    """A recorded data folder that no longer exists: --musdb names its new place."""
    from cumx_cli.commands.train import _resume_data_root
    from cumx_cli.engine.errors import ConfigError

    (tmp_path / "run").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"data_root": str(tmp_path / "gone")}))
    with pytest.raises(ConfigError, match=r"gone, the data of run .*no longer exists: .*--musdb"):
        _resume_data_root(tmp_path / "run", None, None)
    assert _resume_data_root(tmp_path / "run", tmp_path / "new", None) == tmp_path / "new"
