"""asteroid's X-UMX package: loaded as the bridged model, with misnamed tensors named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.weights.resolver import load_model
from tests.conftest import FIXTURES

PEERS = FIXTURES / "peers"


def test_asteroid_file_loads_as_bridged_model() -> None:
    model = load_model(PEERS / "xumx_asteroid.pth")
    assert model.config.bridge and model.sources == ("bass", "drums", "vocals", "other")
    assert model.config.hidden_size == 16 and model.config.max_bin == 1487


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    data = torch.load(PEERS / "xumx_asteroid.pth", weights_only=False)
    del data["state_dict"]["layer_dec.bass.dec.3.weight"]
    data["state_dict"]["layer_dec.bass.dec.9.weight"] = torch.zeros(1)
    torch.save(data, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "bad.pth")
    assert "nets.bass.fc3.weight" in str(info.value) and "layer_dec.bass.dec.9.weight" in str(info.value)
