"""What every format shares: pickles that would run code are refused, damaged files named."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from cumx_cli.engine.config import MUSDB_SOURCES
from cumx_cli.engine.errors import CheckpointError, UnsafeCheckpointError
from cumx_cli.engine.weights.formats.common import in_canonical_order, read_torch_file
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
