"""The run folder: what it refuses, how epochs are recorded, and what a failed start leaves."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.errors import CheckpointError, ConfigError
from cumx_cli.engine.training.run_folder import (
    RunFolder,
    RunState,
    load_run_config,
    recorded_data_root,
)


def test_state_records_the_best_epoch_and_counts_the_others() -> None:
    state = RunState()
    assert state.record(1, 2.0) and (state.best_epoch, state.bad_epochs) == (1, 0)
    assert not state.record(2, 3.0) and not state.record(3, math.nan)
    assert (state.epoch, state.best_loss, state.bad_epochs) == (3, 2.0, 2)
    assert state.record(4, 1.0) and state.bad_epochs == 0


def test_resume_needs_a_run_and_a_new_run_needs_none(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    with pytest.raises(CheckpointError, match="no last.pt to resume from"):
        run.check(resume=True)
    with pytest.raises(CheckpointError, match="start a run with --out"):
        load_run_config(tmp_path / "run")
    run.check(resume=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds a run; use --resume"):
        run.check(resume=False)


def test_a_failed_start_removes_only_what_it_wrote(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "new")
    run.start(TrainConfig(), tmp_path)
    assert (tmp_path / "new" / "config.json").is_file() and run.created
    run.discard_if_unstarted()
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    kept = RunFolder(tmp_path / "mine")
    kept.start(TrainConfig(), tmp_path)
    kept.discard_if_unstarted()  # not created by the run: left alone
    assert (tmp_path / "mine" / "config.json").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_one_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match=r"ro: cannot write the run folder"):
            RunFolder(folder).start(TrainConfig(), tmp_path)
    finally:
        folder.chmod(0o700)


def test_config_json_records_the_resolved_data_root(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert recorded_data_root(tmp_path / "run") is None  # no run folder yet
    RunFolder(tmp_path / "run").start(TrainConfig(), Path("data"))
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["data_root"] == str((tmp_path / "data").resolve())
    assert TrainConfig.from_dict({k: v for k, v in record.items() if k != "data_root"}) == TrainConfig()
    assert recorded_data_root(tmp_path / "run") == (tmp_path / "data").resolve()
    (tmp_path / "run" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    assert recorded_data_root(tmp_path / "run") is None  # a run of an older cumx
    (tmp_path / "run" / "config.json").write_text('{"data_root": 3}')
    with pytest.raises(CheckpointError, match="must be a folder path"):
        recorded_data_root(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="cannot read the run's config"):
        recorded_data_root(tmp_path / "run")


def test_the_init_record_is_written_and_kept_when_the_run_starts_again(tmp_path: Path) -> None:
    """``start`` with a record writes ``init_from``; a resumed start (no record given) keeps the
    one in ``config.json``; a run from random weights has none."""
    from cumx_cli.engine.training.run_folder import INIT_KEY, recorded_init

    record = {"model": "xumx", "kept": ["vocals"], "new": {"accompaniment": "vocals"},
              "dropped": ["bass", "drums", "other"], "input_scaling": "kept"}
    run = RunFolder(tmp_path / "run")
    run.start(TrainConfig(init="xumx"), tmp_path, init=record)
    assert json.loads((tmp_path / "run" / "config.json").read_text())[INIT_KEY] == record
    RunFolder(tmp_path / "run").start(TrainConfig(init="xumx"), tmp_path)
    assert recorded_init(tmp_path / "run") == record
    RunFolder(tmp_path / "plain").start(TrainConfig(), tmp_path)
    assert INIT_KEY not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert recorded_init(tmp_path / "nowhere") is None
