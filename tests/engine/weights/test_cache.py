"""The cache: a corrupt entry is reported offline (with the fix) and fetched again online."""

from __future__ import annotations

import dataclasses

import pytest

from cumx_cli.engine.errors import ChecksumMismatchError
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.download import ensure_weights
from cumx_cli.engine.weights.registry import get_spec
from cumx_cli.engine.weights.resolver import resolve_model
from tests.fake_zenodo import ASTEROID, FakeZenodo


def test_corrupt_cached_file(server: FakeZenodo, settings: WeightsSettings) -> None:
    (result,) = ensure_weights(get_spec("xumx"), settings)
    data = bytearray(result.path.read_bytes())
    data[1000] ^= 0xFF
    result.path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="download-weights xumx --force"):
        resolve_model("xumx", dataclasses.replace(settings, offline=True))
    (again,) = ensure_weights(get_spec("xumx"), settings)  # online: fetched again
    assert again.status == "downloaded" and again.path.read_bytes() == ASTEROID
