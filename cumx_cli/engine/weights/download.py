"""Fetching published weights into the cache: verified, resumable, atomic and locked.

The only module of cumx that touches the network (stdlib ``urllib``). For each missing file:

1. learn what to expect: size and md5 from Zenodo's record API (``/api/records/<id>``), or the
   ``.sha256`` beside the file on a mirror; plus the sha256 prefix in Open-Unmix file names;
2. take a per-file lock (``.<file>.lock``), so two processes never write the same file; a process
   that waited finds the other's verified file and stops there;
3. stream into ``<file>.part``, resuming with an HTTP Range request when a ``.part`` is already
   there or the connection drops after making progress (``retries`` times);
4. verify size and checksums; on a mismatch delete the ``.part`` and raise;
5. move the file into place, then write its ``.sha256`` record (so a crash in between leaves a
   file without a record, which is not a cache entry).

Connection failures that made no progress are not retried, so a machine without network fails
after at most one ``timeout``, with a message that says what to do instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from cumx_cli.engine.errors import (
    ChecksumMismatchError,
    DownloadError,
    NetworkUnreachableError,
    WeightsNotCachedError,
)
from cumx_cli.engine.weights.cache import (
    PART_SUFFIX,
    WeightsSettings,
    file_sha256,
    read_sidecar,
    sidecar,
    write_sidecar,
)
from cumx_cli.engine.weights.registry import WeightsSpec, get_spec, name_sha256_prefix

log = logging.getLogger(__name__)

_BLOCK = 1 << 16
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must match; None where nothing is known."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    source: str = ""


@dataclass(frozen=True)
class FileResult:
    """One file of a model after :func:`ensure_weights`.

    ``note`` is set when the file could not be verified against a published checksum.
    """

    path: Path
    size: int
    status: Literal["downloaded", "cached"]
    note: str | None = None


class DownloadEvents:
    """Hooks for progress reporting; the default does nothing (the CLI overrides them)."""

    def model_started(self, spec: WeightsSpec, origin: str, dest: Path, total: int | None) -> None:
        """Files of ``spec`` are about to be fetched from ``origin`` into ``dest``; ``total`` is
        their published size in bytes when known."""

    def file_started(self, file: str, total: int | None, done: int) -> None:
        """A transfer starts (``done`` > 0 when resuming)."""

    def file_progress(self, file: str, done: int) -> None:
        """``done`` bytes of ``file`` are on disk."""

    def file_finished(self, file: str, result: FileResult) -> None:
        """``file`` is verified and in the cache."""


# -- entry points ------------------------------------------------------------------------------


def ensure_weights(name: str, settings: WeightsSettings, *, force: bool = False,
                   events: DownloadEvents | None = None) -> list[FileResult]:
    """Make every file of the published model ``name`` present and verified in the cache.

    Args:
        name: a registry name.
        settings: cache folder, offline switch, mirror, base URLs and timeouts.
        force: download again even when a verified copy is cached.
        events: progress hooks.

    Returns:
        One result per file, in the registry's order.

    Raises:
        UnknownWeightsError: not a registry name.
        WeightsNotCachedError: offline and a file is missing (names the command and the path).
        ChecksumMismatchError: a download does not match (nothing is kept), or offline and a
            cached file is corrupt.
        NetworkUnreachableError, DownloadError: the file could not be fetched.
    """
    spec = get_spec(name)
    events = events or DownloadEvents()
    results: dict[str, FileResult] = {}
    todo = []
    for file in spec.files:
        path = settings.file_path(spec, file)
        if not force and _entry_is_valid(path, spec, offline=settings.offline):
            results[file] = FileResult(path, path.stat().st_size, "cached")
        else:
            todo.append(file)
    if todo:
        if settings.offline:
            raise WeightsNotCachedError(
                f"model {name!r} is not in the cache ({settings.model_dir(spec)}) and "
                f"CUMX_OFFLINE is set; run: cumx download-weights {name} (on a machine with "
                f"network, then copy {settings.model_dir(spec)} here)"
            )
        expected = _expectations(spec, todo, settings)
        origin = settings.mirror or spec.origin(settings.zenodo_url)
        sizes = [expected[f].size for f in todo]
        total = sum(s for s in sizes if s is not None) if None not in sizes else None
        events.model_started(spec, origin, settings.model_dir(spec), total)
        for file in todo:
            results[file] = _download(spec, file, expected[file], settings, events, force)
    return [results[f] for f in spec.files]


def ensure_model(name: str, settings: WeightsSettings,
                 events: DownloadEvents | None = None) -> Path:
    """The cached path of a published model (a file, or a folder for Open-Unmix), downloading
    it first when needed. Raises as :func:`ensure_weights`."""
    ensure_weights(name, settings, events=events)
    return settings.model_path(get_spec(name))


# -- cache entries -----------------------------------------------------------------------------


def _entry_is_valid(path: Path, spec: WeightsSpec, *, offline: bool) -> bool:
    """A present, recorded and intact file. A corrupt one is deleted (to be fetched again), or,
    offline, reported."""
    recorded = read_sidecar(path)
    if recorded is None or not path.is_file():
        return False
    actual = file_sha256(path)
    if actual == recorded:
        return True
    if offline:
        raise ChecksumMismatchError(
            f"{path}: the cached file is corrupt (sha256 {actual[:12]}..., recorded "
            f"{recorded[:12]}...); run: cumx download-weights {spec.name} --force"
        )
    log.warning("%s: the cached file is corrupt; downloading it again", path)
    path.unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)
    return False


# -- what to expect ----------------------------------------------------------------------------


def _expectations(spec: WeightsSpec, files: list[str], settings: WeightsSettings) -> dict[str, Expected]:
    if settings.mirror:
        return {f: _mirror_expectation(spec, f, settings) for f in files}
    if spec.zenodo_record is not None:
        return _zenodo_expectations(spec, files, settings)
    return {f: Expected(source="no published checksum") for f in files}


def _zenodo_expectations(spec: WeightsSpec, files: list[str],
                         settings: WeightsSettings) -> dict[str, Expected]:
    url = f"{settings.zenodo_url.rstrip('/')}/api/records/{spec.zenodo_record}"
    body = _read_all(url, spec, settings)
    try:
        record = json.loads(body)
        entries = {str(e.get("key") or e.get("filename")): e for e in record["files"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(f"{url}: not a Zenodo record (unexpected JSON: {exc}); try again later "
                            "or use --mirror") from exc
    expected = {}
    for file in files:
        entry = entries.get(file)
        if entry is None:
            raise DownloadError(f"Zenodo record {spec.zenodo_record} has no file {file!r} (it has "
                                f"{', '.join(sorted(entries)) or 'none'}); the record changed, "
                                "please report it")
        checksum = str(entry.get("checksum") or "")
        algo, _, value = checksum.partition(":") if ":" in checksum else ("md5", "", checksum)
        size = entry.get("size", entry.get("filesize"))
        expected[file] = Expected(
            size=int(size) if size is not None else None,
            md5=value.lower() if algo == "md5" and value else None,
            source=f"Zenodo record {spec.zenodo_record}",
        )
    return expected


def _mirror_expectation(spec: WeightsSpec, file: str, settings: WeightsSettings) -> Expected:
    url = _mirror_url(spec, file, settings) + ".sha256"
    try:
        text = _read_all(url, spec, settings).decode("ascii", "replace")
    except DownloadError as exc:
        if "HTTP 404" not in str(exc):
            raise
        return Expected(source="mirror (no .sha256 there)")
    digest = text.split()[0].lower() if text.split() else ""
    if len(digest) != 64:
        raise DownloadError(f"{url}: not a sha256 record; the mirror's files are damaged")
    return Expected(sha256=digest, source="mirror's .sha256")


def _mirror_url(spec: WeightsSpec, file: str, settings: WeightsSettings) -> str:
    assert settings.mirror is not None
    return f"{settings.mirror.rstrip('/')}/{spec.name}/{file}"


# -- HTTP --------------------------------------------------------------------------------------


def _hint(spec: WeightsSpec, settings: WeightsSettings) -> str:
    return (f"set CUMX_WEIGHTS_MIRROR (or --mirror) to a mirror, or run 'cumx download-weights "
            f"{spec.name}' on a machine with network and copy its {spec.name}/ folder into "
            f"{settings.root}, or pass --model PATH")


def _open(url: str, spec: WeightsSpec, settings: WeightsSettings,
          headers: dict[str, str] | None = None) -> Any:
    """Open ``url``; HTTP errors stay ``HTTPError``, failures to connect become typed errors."""
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


def _http_error(exc: urllib.error.HTTPError, url: str, spec: WeightsSpec,
                settings: WeightsSettings) -> DownloadError:
    what = "not found" if exc.code == 404 else (exc.reason or "error")
    return DownloadError(f"cannot download {spec.name}: {url}: HTTP {exc.code} {what}; "
                         f"{'check --mirror / CUMX_WEIGHTS_MIRROR, or ' if settings.mirror else ''}"
                         "try again later")


def _read_all(url: str, spec: WeightsSpec, settings: WeightsSettings) -> bytes:
    try:
        with _open(url, spec, settings) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, url, spec, settings) from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot download {spec.name}: {url}: the connection failed "
                            f"({exc or type(exc).__name__}); try again") from exc


# -- one file ----------------------------------------------------------------------------------


def _download(spec: WeightsSpec, file: str, expected: Expected, settings: WeightsSettings,
              events: DownloadEvents, force: bool) -> FileResult:
    final = settings.file_path(spec, file)
    url = _mirror_url(spec, file, settings) if settings.mirror else spec.file_url(file, settings.zenodo_url)
    try:
        return _download_locked(spec, file, final, url, expected, settings, events, force)
    except OSError as exc:
        _remove_empty_folders(final.parent, settings.root)
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        # the cache folder cannot be made or written: read-only, or not a folder
        raise DownloadError(f"cannot download {spec.name}: cannot write to {final.parent} "
                            f"({exc.strerror or exc}); set --cache-dir / CUMX_CACHE_DIR to a "
                            "writable folder") from exc
    except BaseException:
        _remove_empty_folders(final.parent, settings.root)
        raise


def _remove_empty_folders(folder: Path, root: Path) -> None:
    """After a failure, leave no empty model folder (nor an empty cache root) behind."""
    for path in (folder, root):
        with contextlib.suppress(OSError):
            path.rmdir()  # only succeeds when empty


def _download_locked(spec: WeightsSpec, file: str, final: Path, url: str, expected: Expected,
                     settings: WeightsSettings, events: DownloadEvents, force: bool) -> FileResult:
    with _locked(final):
        if not force and _entry_is_valid(final, spec, offline=False):  # another process did it
            result = FileResult(final, final.stat().st_size, "cached")
            events.file_finished(file, result)
            return result
        part = final.with_name(final.name + PART_SUFFIX)
        try:
            _fetch(url, part, expected, spec, settings, events, file)
            digest, note = _verify(part, expected, spec, file)
        except (ChecksumMismatchError, _DiskFull):
            part.unlink(missing_ok=True)
            raise
        except BaseException:
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
            raise
        sidecar(final).unlink(missing_ok=True)
        os.replace(part, final)
        write_sidecar(final, digest)
    result = FileResult(final, final.stat().st_size, "downloaded", note)
    events.file_finished(file, result)
    return result


class _Dropped(Exception):
    """The server closed the connection before sending the whole body."""


class _DiskFull(DownloadError):
    pass


def _fetch(url: str, part: Path, expected: Expected, spec: WeightsSpec, settings: WeightsSettings,
           events: DownloadEvents, file: str) -> None:
    """Stream ``url`` into ``part``, resuming from what is there; retry drops that made progress."""
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if expected.size is not None and have > expected.size:
            part.unlink()
            have = 0
        if have and have == expected.size:
            return  # complete already; verification decides
        got = 0
        try:
            got = _fetch_once(url, part, have, expected, spec, settings, events, file)
            return
        except _Progress as progress:
            got, exc = progress.got, progress.cause
        if got > 0 and failures < settings.retries:
            failures += 1
            log.info("%s: connection lost after %d bytes (%s); resuming", url, have + got, exc)
            time.sleep(min(0.2 * failures, 1.0))
            continue
        kind = "timed out" if isinstance(exc, TimeoutError) else "the connection dropped"
        kept = part.stat().st_size if part.exists() else 0
        resume = f"; run the command again to resume from {kept} bytes" if kept else "; try again"
        raise DownloadError(f"cannot download {spec.name}: {url}: {kind} "
                            f"({exc or type(exc).__name__}){resume}") from exc


class _Progress(Exception):
    def __init__(self, got: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.got = got
        self.cause = cause


def _fetch_once(url: str, part: Path, have: int, expected: Expected, spec: WeightsSpec,
                settings: WeightsSettings, events: DownloadEvents, file: str) -> int:
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(url, spec, settings, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete (or wrong)
            return 0
        raise _http_error(exc, url, spec, settings) from exc
    except NetworkUnreachableError as exc:
        if have:  # it worked before: a drop, not a dead network
            raise _Progress(0, exc.__cause__ or exc) from exc
        raise
    got = 0
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        total = have + remaining if remaining is not None else expected.size
        _check_space(part.parent, (total or 0) - have, spec, settings)
        events.file_started(file, total, have)
        with _open_part(part, "ab" if have else "wb") as sink:
            while True:
                try:
                    block = response.read(_BLOCK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Progress(got, exc) from exc
                if not block:
                    break
                _write(sink, block, part, spec, settings)
                got += len(block)
                events.file_progress(file, have + got)
    if remaining is not None and got < remaining:
        raise _Progress(got, _Dropped(f"got {have + got} of {have + remaining} bytes"))
    return got


def _open_part(path: Path, mode: str) -> IO[bytes]:
    """Open the partial file (a seam for tests that simulate a full disk)."""
    return open(path, mode)  # noqa: SIM115 - closed by the caller's with


def _write(sink: IO[bytes], block: bytes, part: Path, spec: WeightsSpec, settings: WeightsSettings) -> None:
    try:
        sink.write(block)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _DiskFull(f"cannot download {spec.name}: no space left on the device holding "
                            f"{settings.root}; free some space or set --cache-dir / "
                            "CUMX_CACHE_DIR to another disk") from exc
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from exc


def _check_space(folder: Path, needed: int, spec: WeightsSpec, settings: WeightsSettings) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise _DiskFull(f"cannot download {spec.name}: {needed / 1e6:.1f} MB needed but only "
                        f"{free / 1e6:.1f} MB free in {settings.root}; free some space or set "
                        "--cache-dir / CUMX_CACHE_DIR to another disk")


def _verify(part: Path, expected: Expected, spec: WeightsSpec, file: str) -> tuple[str, str | None]:
    """Check ``part`` against everything known; return its sha256 and a note if unverified."""
    size = part.stat().st_size
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with part.open("rb") as f:
        head = f.read(8)
        f.seek(0)
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    digest = sha.hexdigest()

    def mismatch(what: str) -> ChecksumMismatchError:
        return ChecksumMismatchError(f"{file} ({spec.name}): {what}; nothing was kept, run the "
                                     "command again (if it keeps failing, the server or mirror "
                                     "has a damaged copy)")

    if size == 0:
        raise mismatch("the server sent an empty file")
    if expected.size is not None and size != expected.size:
        raise mismatch(f"got {size} bytes, {expected.source} says {expected.size}")
    if expected.md5 and md5.hexdigest() != expected.md5:
        raise mismatch(f"md5 {md5.hexdigest()} differs from {expected.md5} ({expected.source})")
    if expected.sha256 and digest != expected.sha256:
        raise mismatch(f"sha256 {digest[:12]}... differs from {expected.sha256[:12]}... "
                       f"({expected.source})")
    prefix = name_sha256_prefix(file)
    if prefix and not digest.startswith(prefix):
        raise mismatch(f"sha256 {digest[:12]}... does not start with {prefix}, the prefix in its name")
    if spec.format == "nnabla" and head != _HDF5_SIGNATURE:
        raise mismatch("it is not an HDF5 file")
    if expected.md5 or expected.sha256 or prefix:
        return digest, None
    return digest, ("not verified against a published checksum (none exists); its sha256 "
                    f"{digest[:12]}... is recorded and checked on every later load")


# -- locking -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<file>.lock`` beside ``final``, across processes.

    The lock file is removed on release; a waiter that then gets the lock on the removed file
    notices (its inode is no longer the path's) and locks the new one instead.
    """
    lock = final.with_name(f".{final.name}.lock")
    try:
        import fcntl
    except ImportError:  # not POSIX: a create-exclusive lock file, polled
        yield from _locked_exclusive(lock)
        return
    while True:
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # another process removed the empty folder just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _locked_exclusive(lock: Path) -> Iterator[None]:
    while True:
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            time.sleep(0.2)
    try:
        yield
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)
