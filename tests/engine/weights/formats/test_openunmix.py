"""Open-Unmix model folders: with or without hashes in the names (checked), sources in the
canonical order, and the separation of the peer's fixture (made by openunmix 1.3.0)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import FIXTURES

PEERS = FIXTURES / "peers"


def _snr(est: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / ((est - ref) ** 2).sum()))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(PEERS / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def _separate(model_path: Path, mixture: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    model = load_model(model_path)
    sep = Separator(model, InferenceConfig(niter=1))
    out = sep.separate(torch.from_numpy(mixture)[None])[0].numpy()
    return out, model.sources


def test_umx_folder_without_hash_suffixes(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    for file in (PEERS / "umx").glob("*.pth"):
        shutil.copy(file, folder / (file.stem.split("-")[0] + ".pth"))  # no json files either
    model = load_model(folder)
    assert not model.config.bridge and model.sources == ("bass", "drums", "vocals", "other")
    out, sources = _separate(folder, reference["mixture"])
    first = str(reference["umx_sources"][0])
    assert _snr(out[sources.index(first)], reference["umx_estimates"][0]) >= 60


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
