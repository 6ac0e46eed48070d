"""Checkpoint formats, and parity with the peers' own separations (fixtures made by their code).

tests/fixtures/peers/make_peer_fixtures.py wrote the fixtures with asteroid 0.7.0 (X-UMX, its
MUSDB eval path: whole track, norbert Wiener niter=1, no softmask, no residual) and
openunmix 1.3.0 (``Separator``, niter=1, no residual), both at hidden size 16.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.checkpoint import load_model, resolve_model, save_model
from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.errors import CheckpointError, UnsafeCheckpointError, WeightsNotCachedError
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.weights.cache import WeightsSettings
from tests.conftest import FIXTURES, random_model, tiny_config

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


@pytest.mark.parametrize(("path", "key"), [("xumx_asteroid.pth", "asteroid"), ("umx", "umx")])
def test_parity_with_the_peers_at_60_db(reference: dict[str, np.ndarray], path: str, key: str) -> None:
    out, sources = _separate(PEERS / path, reference["mixture"])
    expected = reference[f"{key}_estimates"]
    assert out.shape[-1] == reference["mixture"].shape[-1]  # cumx keeps the input length
    for j, name in enumerate(reference[f"{key}_sources"]):
        est = out[sources.index(str(name))][:, : expected.shape[-1]]  # asteroid drops the tail
        assert _snr(est, expected[j]) >= 60, name


def test_asteroid_file_loads_as_bridged_model() -> None:
    model = load_model(PEERS / "xumx_asteroid.pth")
    assert model.config.bridge and model.sources == ("bass", "drums", "vocals", "other")
    assert model.config.hidden_size == 16 and model.config.max_bin == 1487


def test_umx_folder_without_hash_suffixes(tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    for file in (PEERS / "umx").glob("*.pth"):
        shutil.copy(file, folder / (file.stem.split("-")[0] + ".pth"))  # no json files either
    model = load_model(folder)
    assert not model.config.bridge and model.sources == ("vocals", "drums", "bass", "other")
    out, _ = _separate(folder, reference["mixture"])
    assert _snr(out[0], reference["umx_estimates"][0]) >= 60


def test_umx_hash_suffix_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "umx"
    shutil.copytree(PEERS / "umx", folder)
    victim = next(folder.glob("vocals-*.pth"))
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(folder)


def test_cumx_format_round_trip(tmp_path: Path) -> None:
    model = random_model(tiny_config(bridge=False, num_layers=2, sources=("x", "y", "z")))
    path = tmp_path / "m.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config == model.config
    mag = torch.rand(1, 2, 2049, 5)
    torch.testing.assert_close(loaded(mag), model(mag), rtol=0, atol=0)
    assert not list(tmp_path.glob(".*part"))
    data = torch.load(path, weights_only=True)
    assert data["format"] == "cumx" and data["format_version"] == 1


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    data = torch.load(PEERS / "xumx_asteroid.pth", weights_only=False)
    del data["state_dict"]["layer_dec.bass.dec.3.weight"]
    data["state_dict"]["layer_dec.bass.dec.9.weight"] = torch.zeros(1)
    torch.save(data, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "bad.pth")
    assert "nets.bass.fc3.weight" in str(info.value) and "layer_dec.bass.dec.9.weight" in str(info.value)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    model = random_model(tiny_config())
    save_model(model, tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    data["state_dict"]["nets.bass.fc1.weight"] = torch.zeros(3, 3)
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"nets.bass.fc1.weight has shape \(3, 3\)"):
        load_model(tmp_path / "m.pt")


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


def test_fixture_hashes_are_what_their_names_say() -> None:
    for file in (PEERS / "umx").glob("*-*.pth"):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        assert digest.startswith(file.stem.split("-")[1])
