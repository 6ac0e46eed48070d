"""HTTP: resuming dropped transfers, HTTP errors, timeouts, no network, TLS and full disks,
against a fake Zenodo on 127.0.0.1 (and a patched socket for the unreachable cases)."""

from __future__ import annotations

import dataclasses
import errno
import io
import socket
import time
from pathlib import Path

import pytest

from cumx_cli.engine.errors import DownloadError, NetworkUnreachableError
from cumx_cli.engine.events import NoDownloadEvents
from cumx_cli.engine.weights import http as weights_http
from cumx_cli.engine.weights.cache import WeightsSettings, is_cached
from cumx_cli.engine.weights.download import ensure_weights
from cumx_cli.engine.weights.registry import get_spec
from cumx_cli.engine.weights.transfer import Expected, Transfer
from tests.engine.weights.helpers import assert_no_entry, cache_files
from tests.fake_zenodo import ASTEROID, XUMX_FILE, Behaviour, FakeZenodo


def test_resumes_after_the_server_drops_the_connection(server: FakeZenodo,
                                                       settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[700_000, 300_000])
    (result,) = ensure_weights(get_spec("xumx"), settings)
    assert result.path.read_bytes() == ASTEROID
    assert server.file_requests(XUMX_FILE) == [None, "bytes=700000-", "bytes=1000000-"]


def test_interrupted_download_resumes_in_the_next_run(server: FakeZenodo,
                                                      settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[1_000_000])
    with pytest.raises(DownloadError, match="resume from 1000000 bytes"):
        ensure_weights(get_spec("xumx"), dataclasses.replace(settings, retries=0))
    assert cache_files(settings.root) == [f"xumx/{XUMX_FILE}.part"]  # a .part is no entry
    assert not is_cached(settings, get_spec("xumx"))
    ensure_weights(get_spec("xumx"), settings)
    assert server.file_requests(XUMX_FILE)[-1] == "bytes=1000000-"
    assert (settings.root / "xumx" / XUMX_FILE).read_bytes() == ASTEROID


def test_server_that_ignores_range_restarts_cleanly(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[500_000], ignore_range=True)
    (result,) = ensure_weights(get_spec("xumx"), settings)
    assert result.path.read_bytes() == ASTEROID


def test_record_404(server: FakeZenodo, settings: WeightsSettings) -> None:
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        ensure_weights(get_spec("xumx-hq"), settings)
    assert "/api/records/4740378" in str(info.value)
    assert not settings.root.exists()


def test_file_404_on_a_mirror(server: FakeZenodo, settings: WeightsSettings) -> None:
    mirrored = dataclasses.replace(settings, mirror=server.url + "/mirror")
    with pytest.raises(DownloadError, match=r"HTTP 404 not found; check --mirror"):
        ensure_weights(get_spec("xumx"), mirrored)
    assert not settings.root.exists()


def test_file_404_on_zenodo_leaves_no_folder(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.static["/api/records/4740378"] = (
        b'{"files": [{"key": "pretrained_xumx_musdb18HQ.pth", "size": 3, "checksum": "md5:x"}]}')
    with pytest.raises(DownloadError,
                       match=r"records/4740378/files/pretrained_xumx_musdb18HQ.pth\?download=1: HTTP 404"):
        ensure_weights(get_spec("xumx-hq"), settings)
    assert not settings.root.exists()


def test_stalled_server_times_out(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(stall=True)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as info:
        ensure_weights(get_spec("xumx"), dataclasses.replace(settings, timeout=0.5, retries=1))
    assert time.monotonic() - started < 10
    assert "\n" not in str(info.value)
    assert_no_entry(settings.root)


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
        ensure_weights(get_spec("xumx"), settings)
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "network is unreachable" in message and "\n" not in message
    assert "CUMX_WEIGHTS_MIRROR" in message and str(settings.root) in message
    assert not (tmp_path / "cache").exists()


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
    real = weights_http.open_part

    def open_part(path: Path, mode: str):  # type: ignore[no-untyped-def]
        real(path, mode).close()  # the .part exists, as it would on a real disk
        return _FullDisk(room=200_000)

    monkeypatch.setattr(weights_http, "open_part", open_part)
    with pytest.raises(DownloadError, match="no space left") as info:
        ensure_weights(get_spec("xumx"), settings)
    assert "--cache-dir" in str(info.value)
    assert cache_files(settings.root) == []


def test_full_disk_before_writing(server: FakeZenodo, settings: WeightsSettings,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_http.shutil, "disk_usage",
                        lambda p: shutil_usage(total=10**9, used=10**9, free=1000))
    with pytest.raises(DownloadError, match=r"MB needed but only 0.0 MB free"):
        ensure_weights(get_spec("xumx"), settings)
    assert cache_files(settings.root) == []


def test_tls_failure_is_not_called_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl
    import urllib.error

    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))

    monkeypatch.setattr(weights_http.urllib.request, "urlopen", fail)
    with pytest.raises(DownloadError, match="TLS connection to zenodo.org failed.*SSL_CERT_FILE") as info:
        ensure_weights(get_spec("xumx"), WeightsSettings(cache_dir=tmp_path / "cache"))
    assert not isinstance(info.value, NetworkUnreachableError)


def test_one_request_returns_what_it_received(server: FakeZenodo, settings: WeightsSettings) -> None:
    server.behaviour[XUMX_FILE] = Behaviour(drop_after=[700_000])
    spec = get_spec("xumx")
    final = settings.file_path(spec, XUMX_FILE)
    final.parent.mkdir(parents=True)
    transfer = Transfer(spec=spec, file=XUMX_FILE, url=settings.file_url(spec, XUMX_FILE), final=final,
                        expected=Expected(size=len(ASTEROID)), settings=settings, events=NoDownloadEvents())
    first = weights_http.fetch_once(transfer, 0)
    assert first.got == 700_000 and first.dropped is not None
    second = weights_http.fetch_once(transfer, first.got)
    assert second == weights_http.Received(len(ASTEROID) - 700_000)
    assert transfer.part.read_bytes() == ASTEROID
    assert weights_http.fetch_once(transfer, len(ASTEROID)) == weights_http.Received(0)  # 416: complete
