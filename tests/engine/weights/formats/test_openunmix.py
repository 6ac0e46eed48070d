"""Open-Unmix model folders: with or without hashes in the names (checked), sources in the
canonical order (the peer's fixture, made by openunmix 1.3.0)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import FIXTURES

PEERS = FIXTURES / "peers"


def test_umx_folder_without_hash_suffixes(tmp_path: Path) -> None:
    """The same model without hashes in the names and without json files (the hop is then
    n_fft / 4, as openunmix assumes); its separations are checked in tests/engine/test_parity.py."""
    folder = tmp_path / "plain"
    folder.mkdir()
    for file in (PEERS / "umx").glob("*.pth"):
        shutil.copy(file, folder / (file.stem.split("-")[0] + ".pth"))  # no json files either
    model = load_model(folder)
    assert not model.config.bridge and model.sources == ("bass", "drums", "vocals", "other")
    hashed = load_model(PEERS / "umx")
    assert model.config == hashed.config
    for (name, value), (other, expected) in zip(model.state_dict().items(),
                                                hashed.state_dict().items(), strict=True):
        assert name == other and torch.equal(value, expected), name


def test_umx_hash_suffix_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "umx"
    shutil.copytree(PEERS / "umx", folder)
    victim = next(folder.glob("vocals-*.pth"))
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(folder)


def test_fixture_hashes_are_what_their_names_say() -> None:
    for file in (PEERS / "umx").glob("*-*.pth"):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        assert digest.startswith(file.stem.split("-")[1])
