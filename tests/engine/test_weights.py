"""Published weights: registry, cache, and downloads against a fake Zenodo on 127.0.0.1.

Every failure must end in a typed one-line error or a verified file, never a cache entry that is
not verified: each failure test checks the cache holds no weights file and no ``.sha256``.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cumx_cli.engine.checkpoint import load_model, resolve_model
from cumx_cli.engine.errors import (
    ChecksumMismatchError,
    DownloadError,
    NetworkUnreachableError,
    UnknownWeightsError,
    UnsafeCheckpointError,
    WeightsNotCachedError,
)
from cumx_cli.engine.weights import download
from cumx_cli.engine.weights.cache import WeightsSettings, file_sha256, is_cached, read_sidecar
from cumx_cli.engine.weights.download import ensure_weights
from cumx_cli.engine.weights.registry import CATALOGUE, get_spec
from tests.conftest import FIXTURES
from tests.fake_zenodo import Behaviour, FakeZenodo

ASTEROID = (FIXTURES / "peers" / "xumx_asteroid.pth").read_bytes()
XUMX_FILE = "pretrained_xumx.pth"


@pytest.fixture
def server() -> Iterator[FakeZenodo]:
    fake = FakeZenodo()
    fake.add_record(4704231, {XUMX_FILE: ASTEROID})
    yield fake
    fake.close()


@pytest.fixture
def settings(server: FakeZenodo, tmp_path: Path) -> WeightsSettings:
    return WeightsSettings(cache_dir=tmp_path / "cache", zenodo_url=server.url, timeout=2.0)


def cache_tree(root: Path) -> list[str]:
    """Every file and folder under the cache."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def cache_files(root: Path) -> list[str]:
    """Everything under the cache (hidden files included), as relative paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_no_entry(root: Path) -> None:
    """No weights file and no sha256 record: a failed download leaves no cache entry."""
    leftovers = [f for f in cache_files(root) if not f.endswith(".part")]
    assert leftovers == [], leftovers


# -- success, cache, registry ----------------------------------------------------------------


def test_download_verifies_and_records_sha256(server: FakeZenodo, settings: WeightsSettings) -> None:
    (result,) = ensure_weights("xumx", settings)
    path = settings.root / "xumx" / XUMX_FILE
    assert result.path == path and result.status == "downloaded" and result.note is None
    assert path.read_bytes() == ASTEROID
    assert read_sidecar(path) == hashlib.sha256(ASTEROID).hexdigest()
    assert (path.parent / (XUMX_FILE + ".sha256")).read_text() == f"{read_sidecar(path)}  {XUMX_FILE}\n"
    assert cache_files(settings.root) == [f"xumx/{XUMX_FILE}", f"xumx/{XUMX_FILE}.sha256"]
    assert server.file_requests(XUMX_FILE) == [None]

    (again,) = ensure_weights("xumx", settings)
    assert again.status == "cached" and server.file_requests(XUMX_FILE) == [None]
    model = resolve_model("xumx", settings)
    assert model.sources == ("bass", "drums", "vocals", "other") and model.config.hidden_size == 16


def test_force_downloads_again(server: FakeZenodo, settings: WeightsSettings) -> None:
    ensure_weights("xumx", settings)
    (result,) = ensure_weights("xumx", settings, force=True)
    assert result.status == "downloaded" and len(server.file_requests(XUMX_FILE)) == 2


def test_registry_entries_are_complete() -> None:
    assert {"xumx", "xumx-hq", "xumxl", "umxhq", "umx", "umxl", "xumx-nnabla"} <= set(CATALOGUE)
    for spec in CATALOGUE.values():
        assert spec.files and spec.license and spec.training_data and spec.description
        assert (spec.zenodo_record is None) != (spec.url is None)
    for name in ("umx", "umxhq", "umxl"):
        assert all(len(f.split("-")[1].split(".")[0]) == 8 for f in CATALOGUE[name].files)
    assert CATALOGUE["xumx-nnabla"].verification == "first-use"


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownWeightsError, match="did you mean 'xumx'"):
        get_spec("xumz")


# -- resume ------------------------------------------------------------------------------------


def test_resumes_after_the_server_drops_the_connection(server: FakeZenodo,
                                                       settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[700_000, 300_000])
    (result,) = ensure_weights("xumx", settings)
    assert result.path.read_bytes() == ASTEROID
    assert server.file_requests(XUMX_FILE) == [None, "bytes=700000-", "bytes=1000000-"]


def test_interrupted_download_resumes_in_the_next_run(server: FakeZenodo,
                                                      settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[1_000_000])
    with pytest.raises(DownloadError, match="resume from 1000000 bytes"):
        ensure_weights("xumx", dataclasses.replace(settings, retries=0))
    assert cache_files(settings.root) == [f"xumx/{XUMX_FILE}.part"]  # a .part is no entry
    assert not is_cached(settings, get_spec("xumx"))
    ensure_weights("xumx", settings)
    assert server.file_requests(XUMX_FILE)[-1] == "bytes=1000000-"
    assert (settings.root / "xumx" / XUMX_FILE).read_bytes() == ASTEROID


def test_server_that_ignores_range_restarts_cleanly(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[500_000], ignore_range=True)
    (result,) = ensure_weights("xumx", settings)
    assert result.path.read_bytes() == ASTEROID


# -- verification failures ---------------------------------------------------------------------


@pytest.mark.parametrize(("behaviour", "message"), [
    (Behaviour(record_size=len(ASTEROID) + 1), "says"),
    (Behaviour(record_md5="0" * 32), "md5"),
], ids=["size", "md5"])
def test_mismatch_keeps_nothing(server: FakeZenodo, settings: WeightsSettings,
                                behaviour: Behaviour, message: str) -> None:
    server.behaviour[XUMX_FILE] = behaviour
    with pytest.raises(ChecksumMismatchError, match=message) as info:
        ensure_weights("xumx", settings)
    assert "\n" not in str(info.value) and "nothing was kept" in str(info.value)
    assert cache_tree(settings.root) == [] and not settings.root.exists()


def test_sha256_prefix_in_open_unmix_names_is_checked(server: FakeZenodo,
                                                      settings: WeightsSettings) -> None:
    server.add_record(3370486, dict.fromkeys(CATALOGUE["umx"].files, b"not the real weights"))
    with pytest.raises(ChecksumMismatchError, match="prefix in its name"):
        ensure_weights("umx", settings)
    assert cache_files(settings.root) == []


def test_open_unmix_folder_downloads_and_loads(server: FakeZenodo, settings: WeightsSettings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    files = {p.name: p.read_bytes() for p in (FIXTURES / "peers" / "umx").glob("*.pth")}
    spec = dataclasses.replace(CATALOGUE["umx"], name="umx-tiny", zenodo_record=1, files=tuple(sorted(files)))
    monkeypatch.setitem(CATALOGUE, "umx-tiny", spec)
    server.add_record(1, files)
    model = resolve_model("umx-tiny", settings)
    assert not model.config.bridge and model.sources == ("vocals", "drums", "bass", "other")
    assert len(cache_files(settings.root)) == 8


# -- HTTP and network failures -----------------------------------------------------------------


def test_record_404(server: FakeZenodo, settings: WeightsSettings) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        ensure_weights("xumx-hq", settings)
    assert "/api/records/4740378" in str(info.value)
    assert not settings.root.exists()


def test_file_404_on_a_mirror(server: FakeZenodo, settings: WeightsSettings) -> None:
    mirrored = dataclasses.replace(settings, mirror=server.url + "/mirror")
    with pytest.raises(DownloadError, match=r"HTTP 404 not found; check --mirror"):
        ensure_weights("xumx", mirrored)
    assert not settings.root.exists()


def test_file_404_on_zenodo_leaves_no_folder(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.static["/api/records/4740378"] = (
        b'{"files": [{"key": "pretrained_xumx_musdb18HQ.pth", "size": 3, "checksum": "md5:x"}]}')
    with pytest.raises(DownloadError, match=r"records/4740378/files/pretrained_xumx_musdb18HQ.pth\?download=1: HTTP 404"):
        ensure_weights("xumx-hq", settings)
    assert not settings.root.exists()


def test_stalled_server_times_out(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(stall=True)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as info:
        ensure_weights("xumx", dataclasses.replace(settings, timeout=0.5, retries=1))
    assert time.monotonic() - started < 10
    assert "\n" not in str(info.value)
    assert_no_entry(settings.root)


def test_offline_never_touches_the_network(server: FakeZenodo, settings: WeightsSettings) -> None:
    offline = dataclasses.replace(settings, offline=True)
    with pytest.raises(WeightsNotCachedError) as info:
        resolve_model("xumx", offline)
    message = str(info.value)
    assert "cumx download-weights xumx" in message and str(settings.root / "xumx") in message
    assert server.requests == [] and cache_files(settings.root) == []
    ensure_weights("xumx", settings)
    server.requests.clear()
    assert resolve_model("xumx", offline).config.hidden_size == 16
    assert server.requests == []


@pytest.mark.parametrize("failure", [
    OSError(errno.ENETUNREACH, "Network is unreachable"),
    socket.gaierror(-3, "Temporary failure in name resolution"),
    TimeoutError("timed out"),
], ids=["no-route", "no-dns", "connect-timeout"])
def test_unreachable_network_fails_fast_with_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    failure: OSError) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise failure

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(failure)
                        if isinstance(failure, socket.gaierror) else
                        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443))])
    settings = WeightsSettings(cache_dir=tmp_path / "cache")  # the real zenodo.org
    started = time.monotonic()
    with pytest.raises(NetworkUnreachableError) as info:
        ensure_weights("xumx", settings)
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "network is unreachable" in message and "\n" not in message
    assert "CUMX_WEIGHTS_MIRROR" in message and str(settings.root) in message
    assert not (tmp_path / "cache").exists()


# -- concurrency and disk ----------------------------------------------------------------------

_CHILD = """
import sys
from pathlib import Path
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.download import ensure_weights
(r,) = ensure_weights("xumx", WeightsSettings(cache_dir=Path(sys.argv[1]), zenodo_url=sys.argv[2]))
print(r.status)
"""


def test_two_processes_download_the_same_file_once(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(delay_per_block=0.004)  # ~1.2 s for the file
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(settings.root), server.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == ["cached", "downloaded"]
    assert server.file_requests(XUMX_FILE) == [None]
    path = settings.root / "xumx" / XUMX_FILE
    assert path.read_bytes() == ASTEROID
    assert cache_files(settings.root) == [f"xumx/{XUMX_FILE}", f"xumx/{XUMX_FILE}.sha256"]


def shutil_usage(**fields: int) -> object:
    import shutil

    return shutil._ntuple_diskusage(**fields)  # type: ignore[attr-defined]


class _FullDisk(io.BytesIO):
    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_full_disk_while_writing(server: FakeZenodo, settings: WeightsSettings,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = download._open_part

    def open_part(path: Path, mode: str):  # type: ignore[no-untyped-def]
        real(path, mode).close()  # the .part exists, as it would on a real disk
        return _FullDisk(room=200_000)

    monkeypatch.setattr(download, "_open_part", open_part)
    with pytest.raises(DownloadError, match="no space left") as info:
        ensure_weights("xumx", settings)
    assert "--cache-dir" in str(info.value)
    assert cache_files(settings.root) == []


def test_full_disk_before_writing(server: FakeZenodo, settings: WeightsSettings,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: shutil_usage(total=10**9, used=10**9, free=1000))
    with pytest.raises(DownloadError, match=r"MB needed but only 0.0 MB free"):
        ensure_weights("xumx", settings)
    assert cache_files(settings.root) == []


# -- cached files, mirrors, first-use verification, unsafe pickles ------------------------------


def test_corrupt_cached_file(server: FakeZenodo, settings: WeightsSettings) -> None:
    (result,) = ensure_weights("xumx", settings)
    data = bytearray(result.path.read_bytes())
    data[1000] ^= 0xFF
    result.path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="download-weights xumx --force"):
        resolve_model("xumx", dataclasses.replace(settings, offline=True))
    (again,) = ensure_weights("xumx", settings)  # online: fetched again
    assert again.status == "downloaded" and again.path.read_bytes() == ASTEROID


def test_mirror_serves_a_copy_of_the_cache(server: FakeZenodo, settings: WeightsSettings,
                                           tmp_path: Path) -> None:
    ensure_weights("xumx", settings)
    for rel in cache_files(settings.root):
        server.static[f"/mirror/{rel}"] = (settings.root / rel).read_bytes()
    other = WeightsSettings(cache_dir=tmp_path / "cluster", mirror=server.url + "/mirror/",
                            zenodo_url="http://127.0.0.1:9")  # Zenodo unreachable: never used
    (result,) = ensure_weights("xumx", other)
    assert result.path.read_bytes() == ASTEROID and result.note is None

    server.static[f"/mirror/xumx/{XUMX_FILE}"] = ASTEROID[:-1] + b"x"
    with pytest.raises(ChecksumMismatchError, match="mirror's .sha256"):
        ensure_weights("xumx", dataclasses.replace(other, cache_dir=tmp_path / "c2"))
    assert cache_files(tmp_path / "c2") == []


def test_nnabla_file_is_recorded_on_first_use(server: FakeZenodo, settings: WeightsSettings,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(CATALOGUE["xumx-nnabla"], url=server.url + "/nnabla/")
    monkeypatch.setitem(CATALOGUE, "xumx-nnabla", spec)
    server.static["/nnabla/x-umx.h5"] = b"<html>moved</html>"
    with pytest.raises(ChecksumMismatchError, match="not an HDF5 file"):
        ensure_weights("xumx-nnabla", settings)
    assert cache_files(settings.root) == []
    server.static["/nnabla/x-umx.h5"] = b"\x89HDF\r\n\x1a\n" + bytes(1000)
    (result,) = ensure_weights("xumx-nnabla", settings)
    assert result.note is not None and "not verified against a published checksum" in result.note
    assert read_sidecar(result.path) == file_sha256(result.path)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch '{self.marker}'",))


def test_downloaded_pickle_that_runs_code_is_refused(server: FakeZenodo, settings: WeightsSettings,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = pickle.dumps({"model_name": "XUMX", "state_dict": _Exploit(marker)})
    server.add_record(4704231, {XUMX_FILE: evil})
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        resolve_model("xumx", settings)
    assert not marker.exists()


def test_local_paths_still_load_without_the_registry(tmp_path: Path) -> None:
    model = load_model(FIXTURES / "peers" / "xumx_asteroid.pth")
    assert model.config.bridge


def test_tls_failure_is_not_called_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl
    import urllib.error

    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))

    monkeypatch.setattr(download.urllib.request, "urlopen", fail)
    with pytest.raises(DownloadError, match="TLS connection to zenodo.org failed.*SSL_CERT_FILE") as info:
        ensure_weights("xumx", WeightsSettings(cache_dir=tmp_path / "cache"))
    assert not isinstance(info.value, NetworkUnreachableError)
