"""Verification of downloads: size, md5, the sha256 prefix in a name, and first-use recording."""

from __future__ import annotations

import dataclasses

import pytest

from cumx_cli.engine.errors import ChecksumMismatchError
from cumx_cli.engine.weights.cache import WeightsSettings, read_sidecar
from cumx_cli.engine.weights.download import ensure_weights
from cumx_cli.engine.weights.integrity import file_sha256
from cumx_cli.engine.weights.registry import CATALOGUE, get_spec
from tests.engine.weights.helpers import cache_files, cache_tree
from tests.fake_zenodo import ASTEROID, XUMX_FILE, Behaviour, FakeZenodo


@pytest.mark.parametrize(("behaviour", "message"), [
    (Behaviour(record_size=len(ASTEROID) + 1), "says"),
    (Behaviour(record_md5="0" * 32), "md5"),
], ids=["size", "md5"])
def test_mismatch_keeps_nothing(server: FakeZenodo, settings: WeightsSettings,
                                behaviour: Behaviour, message: str) -> None:
    server.behaviour[XUMX_FILE] = behaviour
    with pytest.raises(ChecksumMismatchError, match=message) as info:
        ensure_weights(get_spec("xumx"), settings)
    assert "\n" not in str(info.value) and "nothing was kept" in str(info.value)
    assert cache_tree(settings.root) == [] and not settings.root.exists()


def test_sha256_prefix_in_open_unmix_names_is_checked(server: FakeZenodo,
                                                      settings: WeightsSettings) -> None:
    server.add_record(3370486, dict.fromkeys(CATALOGUE["umx"].files, b"not the real weights"))
    with pytest.raises(ChecksumMismatchError, match="prefix in its name"):
        ensure_weights(get_spec("umx"), settings)
    assert cache_files(settings.root) == []


def test_nnabla_file_is_recorded_on_first_use(server: FakeZenodo, settings: WeightsSettings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(CATALOGUE["xumx-nnabla"], url=server.url + "/nnabla/")
    monkeypatch.setitem(CATALOGUE, "xumx-nnabla", spec)
    server.static["/nnabla/x-umx.h5"] = b"<html>moved</html>"
    with pytest.raises(ChecksumMismatchError, match="not an HDF5 file"):
        ensure_weights(get_spec("xumx-nnabla"), settings)
    assert cache_files(settings.root) == []
    server.static["/nnabla/x-umx.h5"] = b"\x89HDF\r\n\x1a\n" + bytes(1000)
    (result,) = ensure_weights(get_spec("xumx-nnabla"), settings)
    assert result.note is not None and "not verified against a published checksum" in result.note
    assert read_sidecar(result.path) == file_sha256(result.path)
