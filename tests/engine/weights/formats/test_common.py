"""What every format shares: pickles that would run code are refused, damaged files named."""

from __future__ import annotations

import pickle
import threading
import warnings
from pathlib import Path

import pytest
import torch

from cumx_cli.engine.config import MUSDB_SOURCES
from cumx_cli.engine.errors import CheckpointError, UnsafeCheckpointError
from cumx_cli.engine.model.threads import intra_op_threads
from cumx_cli.engine.weights.formats.common import in_canonical_order, map_files, read_torch_file
from cumx_cli.engine.weights.resolver import load_model


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.marker),))  # type: ignore[attr-defined]


def test_code_running_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = _Exploit()
    payload.marker = str(marker)  # type: ignore[attr-defined]
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"model_name": "XUMX", "state_dict": payload}, f)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_model(path)
    assert not marker.exists()


def test_damaged_or_foreign_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        read_torch_file(tmp_path / "notes.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04" + bytes(50))
    with pytest.raises(CheckpointError, match="cut.pt: not a PyTorch checkpoint or it is damaged"):
        read_torch_file(tmp_path / "cut.pt")


def test_sources_are_put_in_the_canonical_order() -> None:
    assert in_canonical_order(["vocals", "other", "drums", "bass"]) == MUSDB_SOURCES
    assert in_canonical_order(["piano", "vocals", "guitar", "bass"]) == ("bass", "vocals", "guitar", "piano")


def test_files_are_read_two_at_a_time_with_the_loading_settings_entered_once(
        tmp_path: Path) -> None:
    """map_files: results in the order of the paths, read on two threads with two cores; the
    threads load files that need cumx's safe globals (a TorchVersion), and the process-wide
    settings are entered once and left as they were."""
    paths = []
    for k in range(4):
        path = tmp_path / f"{k}.pt"
        torch.save({"k": torch.full((3,), float(k)), "version": torch.__version__}, path)
        paths.append(path)
    filters = list(warnings.filters)
    threads: list[str] = []

    def read(path: Path) -> float:
        threads.append(threading.current_thread().name)
        return float(read_torch_file(path)["k"][0])

    with intra_op_threads(2):
        assert map_files(read, paths) == [0.0, 1.0, 2.0, 3.0]
    assert all(name.startswith("cumx-load") for name in threads)
    with intra_op_threads(1):
        threads.clear()
        assert map_files(read, paths[:2]) == [0.0, 1.0]
        assert threads == [threading.current_thread().name] * 2  # one core: here, in turn
    assert warnings.filters == filters
    assert torch.torch_version.TorchVersion not in torch.serialization.get_safe_globals()


def test_the_first_failing_file_in_order_is_raised_after_all_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.pt").write_text("not a checkpoint")
    (tmp_path / "b.pt").write_text("nor this")
    torch.save({"x": torch.ones(2)}, tmp_path / "c.pt")
    done: list[str] = []

    def read(path: Path) -> object:
        try:
            return read_torch_file(path)
        finally:
            done.append(path.name)

    with intra_op_threads(2), pytest.raises(CheckpointError, match=r"a\.pt: not a PyTorch"):
        map_files(read, [tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"])
    assert sorted(done) == ["a.pt", "b.pt", "c.pt"]
