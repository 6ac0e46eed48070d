"""From a name or a path to a model: format detection, paths that do not exist, unknown names,
unsafe downloads, and checks made before any download."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from cumx_cli.engine.errors import (
    CheckpointError,
    MissingDependencyError,
    UnsafeCheckpointError,
    WeightsNotCachedError,
)
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.resolver import load_model, resolve_model
from tests.conftest import FIXTURES
from tests.fake_zenodo import XUMX_FILE, FakeZenodo


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch '{self.marker}'",))


def test_downloaded_pickle_that_runs_code_is_refused(server: FakeZenodo, settings: WeightsSettings,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = pickle.dumps({"model_name": "XUMX", "state_dict": _Exploit(marker)})
    server.add_record(4704231, {XUMX_FILE: evil})
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        resolve_model("xumx", settings)
    assert not marker.exists()


def test_local_paths_still_load_without_the_registry(tmp_path: Path) -> None:
    model = load_model(FIXTURES / "peers" / "xumx_asteroid.pth")
    assert model.config.bridge


def test_unknown_files_and_names(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        load_model(tmp_path / "other.pt")
    offline = WeightsSettings(cache_dir=tmp_path / "cache", offline=True)
    with pytest.raises(WeightsNotCachedError, match="cumx download-weights xumx"):
        resolve_model("xumx", offline)
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        resolve_model("nope")
    with pytest.raises(CheckpointError, match="no such model"):
        resolve_model(str(tmp_path / "missing.pt"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="no .pth files"):
        load_model(tmp_path / "empty_dir")


def test_published_nnabla_model_without_h5py_fails_before_downloading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match="h5py"):
        resolve_model("xumx-nnabla", WeightsSettings(cache_dir=tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()
