"""HTTP for the weights downloader (stdlib ``urllib``): typed errors, small bodies, and files
streamed into a ``.part`` with resume.

The only module of cumx that touches the network. :func:`fetch_once` makes one request and
returns what it received (a byte count, and why it stopped early if it did); :func:`fetch`
resumes from what is on disk with an HTTP Range request while the drops keep making progress.
Connection failures that made no progress are not retried, so a machine without network fails
after at most one ``timeout``, with a message that says what to do instead.
"""

from __future__ import annotations

import errno
import http.client
import logging
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from cumx_cli.engine.errors import DownloadError, NetworkUnreachableError
from cumx_cli.engine.weights.cache import WeightsSettings
from cumx_cli.engine.weights.registry import WeightsSpec
from cumx_cli.engine.weights.transfer import Transfer

log = logging.getLogger(__name__)

_BLOCK = 1 << 16
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFull(DownloadError):
    """The cache's disk has no room for the file (the ``.part`` is not worth keeping)."""


class _Dropped(Exception):
    """The server closed the connection before sending the whole body."""


@dataclass(frozen=True)
class Received:
    """What one request appended to the ``.part`` file.

    Attributes:
        got: bytes written by this request.
        dropped: why the body ended early (the connection's error), or None when it was complete.
    """

    got: int
    dropped: BaseException | None = None


def _hint(spec: WeightsSpec, settings: WeightsSettings) -> str:
    return (f"set CUMX_WEIGHTS_MIRROR (or --mirror) to a mirror, or run 'cumx download-weights "
            f"{spec.name}' on a machine with network and copy its {spec.name}/ folder into "
            f"{settings.root}, or pass --model PATH")


def open_url(url: str, spec: WeightsSpec, settings: WeightsSettings,
             headers: dict[str, str] | None = None) -> Any:
    """Open ``url``; HTTP errors stay ``HTTPError``, failures to connect become typed errors.

    Raises:
        DownloadError: the TLS handshake failed (names SSL_CERT_FILE and the mirror).
        NetworkUnreachableError: no route, no DNS, no answer (names what to do offline).
    """
    from cumx_cli import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"cumx/{__version__}", **(headers or {})})
    host = urlsplit(url).netloc
    try:
        return urllib.request.urlopen(request, timeout=settings.timeout)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):  # reachable, but the TLS handshake failed
            raise DownloadError(
                f"cannot download {spec.name}: the TLS connection to {host} failed ({reason}); "
                "if a proxy re-signs HTTPS traffic, point SSL_CERT_FILE at its CA bundle, or "
                f"use a mirror (--mirror / CUMX_WEIGHTS_MIRROR)"
            ) from exc
        if isinstance(reason, socket.gaierror):
            why = f"cannot resolve {host}"
        elif isinstance(reason, TimeoutError):
            why = f"no answer from {host} within {settings.timeout:g} s"
        else:
            why = f"cannot connect to {host}: {getattr(reason, 'strerror', None) or reason}"
        raise NetworkUnreachableError(
            f"cannot download {spec.name}: the network is unreachable ({why}); {_hint(spec, settings)}"
        ) from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise NetworkUnreachableError(
            f"cannot download {spec.name}: {host} did not answer ({exc or type(exc).__name__}); "
            f"{_hint(spec, settings)}"
        ) from exc


def http_error(exc: urllib.error.HTTPError, url: str, spec: WeightsSpec,
               settings: WeightsSettings) -> DownloadError:
    """The one-line error for an HTTP error status."""
    what = "not found" if exc.code == 404 else (exc.reason or "error")
    return DownloadError(f"cannot download {spec.name}: {url}: HTTP {exc.code} {what}; "
                         f"{'check --mirror / CUMX_WEIGHTS_MIRROR, or ' if settings.mirror else ''}"
                         "try again later")


def read_all(url: str, spec: WeightsSpec, settings: WeightsSettings) -> bytes:
    """The whole body of a small resource (a record, a ``.sha256``).

    Raises:
        DownloadError: an HTTP error status ("HTTP 404 ...") or a failed connection.
        NetworkUnreachableError: as :func:`open_url`.
    """
    try:
        with open_url(url, spec, settings) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise http_error(exc, url, spec, settings) from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot download {spec.name}: {url}: the connection failed "
                            f"({exc or type(exc).__name__}); try again") from exc


def fetch(transfer: Transfer) -> None:
    """Stream ``transfer.url`` into ``transfer.part``, resuming from what is there; retry drops
    that made progress (``settings.retries`` times).

    Raises:
        DownloadError: the transfer dropped or timed out for good (the ``.part`` is kept and the
            message says the next run resumes), an HTTP error, or a full disk (:class:`DiskFull`).
        NetworkUnreachableError: the first request could not connect.
    """
    failures = 0
    while True:
        have = _resumable_size(transfer)
        if have and have == transfer.expected.size:
            return  # complete already; verification decides
        received = fetch_once(transfer, have)
        if received.dropped is None:
            return
        if received.got > 0 and failures < transfer.settings.retries:
            failures += 1
            log.info("%s: connection lost after %d bytes (%s); resuming", transfer.url,
                     have + received.got, received.dropped)
            time.sleep(min(0.2 * failures, 1.0))
            continue
        raise _dropped_error(transfer, received.dropped) from received.dropped


def _resumable_size(transfer: Transfer) -> int:
    """Bytes of the ``.part`` to resume from; one longer than the file is removed."""
    part = transfer.part
    have = part.stat().st_size if part.exists() else 0
    if transfer.expected.size is not None and have > transfer.expected.size:
        part.unlink()
        return 0
    return have


def _dropped_error(transfer: Transfer, exc: BaseException) -> DownloadError:
    kind = "timed out" if isinstance(exc, TimeoutError) else "the connection dropped"
    kept = transfer.part.stat().st_size if transfer.part.exists() else 0
    resume = f"; run the command again to resume from {kept} bytes" if kept else "; try again"
    return DownloadError(f"cannot download {transfer.spec.name}: {transfer.url}: {kind} "
                         f"({exc or type(exc).__name__}){resume}")


def fetch_once(transfer: Transfer, have: int) -> Received:
    """One request for the bytes after the first ``have`` (all of them when 0).

    A server that ignores the Range header sends everything: the ``.part`` is started over.
    """
    t = transfer
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = open_url(t.url, t.spec, t.settings, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete (or wrong)
            return Received(0)
        raise http_error(exc, t.url, t.spec, t.settings) from exc
    except NetworkUnreachableError as exc:
        if have:  # it worked before: a drop, not a dead network
            return Received(0, exc.__cause__ or exc)
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start over
        return _stream(t, response, have)


def _stream(t: Transfer, response: Any, have: int) -> Received:
    length = response.headers.get("Content-Length")
    remaining = int(length) if length and length.isdigit() else None
    total = have + remaining if remaining is not None else t.expected.size
    check_space(t, (total or 0) - have)
    t.events.file_started(t.file, total, have)
    got = 0
    with open_part(t.part, "ab" if have else "wb") as sink:
        while True:
            try:
                block = response.read(_BLOCK)
            except (OSError, http.client.HTTPException) as exc:
                return Received(got, exc)
            if not block:
                break
            _write(sink, block, t)
            got += len(block)
            t.events.file_progress(t.file, have + got)
    if remaining is not None and got < remaining:
        return Received(got, _Dropped(f"got {have + got} of {have + remaining} bytes"))
    return Received(got)


def open_part(path: Path, mode: str) -> IO[bytes]:
    """Open the partial file (a seam for tests that simulate a full disk)."""
    return open(path, mode)  # noqa: SIM115 - closed by the caller's with


def _write(sink: IO[bytes], block: bytes, t: Transfer) -> None:
    try:
        sink.write(block)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFull(f"cannot download {t.spec.name}: no space left on the device holding "
                           f"{t.settings.root}; free some space or set --cache-dir / "
                           "CUMX_CACHE_DIR to another disk") from exc
        raise DownloadError(f"cannot write {t.part}: {exc.strerror or exc}") from exc


def check_space(t: Transfer, needed: int) -> None:
    """Raise :class:`DiskFull` when the cache's disk has less than ``needed`` bytes free."""
    free = shutil.disk_usage(t.part.parent).free
    if needed > free:
        raise DiskFull(f"cannot download {t.spec.name}: {needed / 1e6:.1f} MB needed but only "
                       f"{free / 1e6:.1f} MB free in {t.settings.root}; free some space or set "
                       "--cache-dir / CUMX_CACHE_DIR to another disk")
