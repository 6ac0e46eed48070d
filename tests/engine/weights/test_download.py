"""Downloads into the cache against a fake Zenodo on 127.0.0.1: verified, recorded, cached,
forced, offline, and from a mirror."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from cumx_cli.engine.errors import ChecksumMismatchError, WeightsNotCachedError
from cumx_cli.engine.weights.cache import WeightsSettings, read_sidecar
from cumx_cli.engine.weights.download import ensure_weights
from cumx_cli.engine.weights.registry import CATALOGUE, get_spec
from cumx_cli.engine.weights.resolver import resolve_model
from tests.conftest import FIXTURES
from tests.engine.weights.helpers import cache_files
from tests.fake_zenodo import ASTEROID, XUMX_FILE, FakeZenodo


def test_download_verifies_and_records_sha256(server: FakeZenodo, settings: WeightsSettings) -> None:
    (result,) = ensure_weights(get_spec("xumx"), settings)
    path = settings.root / "xumx" / XUMX_FILE
    assert result.path == path and result.status == "downloaded" and result.note is None
    assert path.read_bytes() == ASTEROID
    assert read_sidecar(path) == hashlib.sha256(ASTEROID).hexdigest()
    assert (path.parent / (XUMX_FILE + ".sha256")).read_text() == f"{read_sidecar(path)}  {XUMX_FILE}\n"
    assert cache_files(settings.root) == [f"xumx/{XUMX_FILE}", f"xumx/{XUMX_FILE}.sha256"]
    assert server.file_requests(XUMX_FILE) == [None]

    (again,) = ensure_weights(get_spec("xumx"), settings)
    assert again.status == "cached" and server.file_requests(XUMX_FILE) == [None]
    model = resolve_model("xumx", settings)
    assert model.sources == ("bass", "drums", "vocals", "other") and model.config.hidden_size == 16


def test_force_downloads_again(server: FakeZenodo, settings: WeightsSettings) -> None:
    ensure_weights(get_spec("xumx"), settings)
    (result,) = ensure_weights(get_spec("xumx"), settings, force=True)
    assert result.status == "downloaded" and len(server.file_requests(XUMX_FILE)) == 2


def test_open_unmix_folder_downloads_and_loads(server: FakeZenodo, settings: WeightsSettings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    files = {p.name: p.read_bytes() for p in (FIXTURES / "peers" / "umx").glob("*.pth")}
    spec = dataclasses.replace(CATALOGUE["umx"], name="umx-tiny", zenodo_record=1, files=tuple(sorted(files)))
    monkeypatch.setitem(CATALOGUE, "umx-tiny", spec)
    server.add_record(1, files)
    model = resolve_model("umx-tiny", settings)
    assert not model.config.bridge and model.sources == ("bass", "drums", "vocals", "other")
    assert len(cache_files(settings.root)) == 8


def test_offline_never_touches_the_network(server: FakeZenodo, settings: WeightsSettings) -> None:
    offline = dataclasses.replace(settings, offline=True)
    with pytest.raises(WeightsNotCachedError) as info:
        resolve_model("xumx", offline)
    message = str(info.value)
    assert "cumx download-weights xumx" in message and str(settings.root / "xumx") in message
    assert server.requests == [] and cache_files(settings.root) == []
    ensure_weights(get_spec("xumx"), settings)
    server.requests.clear()
    assert resolve_model("xumx", offline).config.hidden_size == 16
    assert server.requests == []


def test_mirror_serves_a_copy_of_the_cache(server: FakeZenodo, settings: WeightsSettings,
                                           tmp_path: Path) -> None:
    ensure_weights(get_spec("xumx"), settings)
    for rel in cache_files(settings.root):
        server.static[f"/mirror/{rel}"] = (settings.root / rel).read_bytes()
    other = WeightsSettings(cache_dir=tmp_path / "cluster", mirror=server.url + "/mirror/",
                            zenodo_url="http://127.0.0.1:9")  # Zenodo unreachable: never used
    (result,) = ensure_weights(get_spec("xumx"), other)
    assert result.path.read_bytes() == ASTEROID and result.note is None

    server.static[f"/mirror/xumx/{XUMX_FILE}"] = ASTEROID[:-1] + b"x"
    with pytest.raises(ChecksumMismatchError, match="mirror's .sha256"):
        ensure_weights(get_spec("xumx"), dataclasses.replace(other, cache_dir=tmp_path / "c2"))
    assert cache_files(tmp_path / "c2") == []
