"""cumx's own format: models and training checkpoints round trip, and versions are checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.weights.formats.cumx import (
    FORMAT_VERSION,
    load_training_checkpoint,
    save_model,
    save_training_checkpoint,
)
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import random_model, tiny_config


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


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    model = random_model(tiny_config())
    save_model(model, tmp_path / "m.pt")
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    data["state_dict"]["nets.bass.fc1.weight"] = torch.zeros(3, 3)
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"nets.bass.fc1.weight has shape \(3, 3\)"):
        load_model(tmp_path / "m.pt")


def test_training_checkpoint_round_trip_and_loads_as_a_model(tmp_path: Path) -> None:
    model = random_model(tiny_config())
    path = tmp_path / "run" / "last.pt"
    save_training_checkpoint(model, path, {"lr": 0.001}, {"epoch": 3, "history": [1.0, 0.5]})
    data = load_training_checkpoint(path)
    assert data["train_config"] == {"lr": 0.001} and data["training"]["epoch"] == 3
    assert data["format"] == "cumx" and data["format_version"] == FORMAT_VERSION
    assert load_model(path).config == model.config  # also usable by `cumx separate`


@pytest.mark.parametrize("load", [load_model, load_training_checkpoint], ids=["model", "training"])
def test_another_format_version_names_both(tmp_path: Path, load: Callable[[Path], object]) -> None:
    path = tmp_path / "last.pt"
    save_training_checkpoint(random_model(tiny_config()), path, {}, {})
    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    message = f"format version {FORMAT_VERSION + 1} is not supported .*reads version {FORMAT_VERSION}"
    with pytest.raises(CheckpointError, match=message):
        load(path)


def test_a_model_file_is_not_a_training_checkpoint(tmp_path: Path) -> None:
    save_model(random_model(tiny_config()), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="not a cumx training checkpoint .no train_config"):
        load_training_checkpoint(tmp_path / "m.pt")
