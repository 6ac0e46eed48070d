"""Fetching published weights into the cache: verified, resumable, atomic and locked.

For each file of a model that is not a valid cache entry:

1. learn what to expect (:mod:`.verify`): size and md5 from Zenodo's record API, or the
   ``.sha256`` beside the file on a mirror; plus the sha256 prefix in Open-Unmix file names;
2. take a per-file lock (:mod:`.lock`), so two processes never write the same file; a process
   that waited finds the other's verified file and stops there;
3. stream into ``<file>.part`` (:mod:`.http`), resuming with an HTTP Range request when a
   ``.part`` is already there or the connection drops after making progress;
4. verify size and checksums; on a mismatch delete the ``.part`` and raise;
5. move the file into place, then write its ``.sha256`` record (so a crash in between leaves a
   file without a record, which is not a cache entry).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cumx_cli.engine.errors import ChecksumMismatchError, DownloadError, WeightsNotCachedError
from cumx_cli.engine.events import DownloadEvents, NoDownloadEvents
from cumx_cli.engine.weights.cache import WeightsSettings, entry_is_valid, sidecar, write_sidecar
from cumx_cli.engine.weights.http import DiskFull, fetch
from cumx_cli.engine.weights.lock import locked
from cumx_cli.engine.weights.registry import WeightsSpec
from cumx_cli.engine.weights.transfer import Transfer
from cumx_cli.engine.weights.verify import expectations, verify_download


@dataclass(frozen=True)
class FileResult:
    """One file of a model after :func:`ensure_weights`.

    ``note`` is set when the file could not be verified against a published checksum.
    """

    path: Path
    size: int
    status: Literal["downloaded", "cached"]
    note: str | None = None


def ensure_weights(spec: WeightsSpec, settings: WeightsSettings, *, force: bool = False,
                   events: DownloadEvents | None = None) -> list[FileResult]:
    """Make every file of the published model ``spec`` present and verified in the cache.

    Args:
        spec: the registry entry (:func:`~cumx_cli.engine.weights.registry.get_spec`).
        settings: cache folder, offline switch, mirror, base URLs and timeouts.
        force: download again even when a verified copy is cached.
        events: progress hooks.

    Returns:
        One result per file, in the registry's order.

    Raises:
        WeightsNotCachedError: offline and a file is missing (names the command and the path).
        ChecksumMismatchError: a download does not match (nothing is kept), or offline and a
            cached file is corrupt.
        NetworkUnreachableError, DownloadError: the file could not be fetched.
    """
    events = events or NoDownloadEvents()
    results: dict[str, FileResult] = {}
    todo = []
    for file in spec.files:
        path = settings.file_path(spec, file)
        if not force and entry_is_valid(path, spec, offline=settings.offline):
            results[file] = FileResult(path, path.stat().st_size, "cached")
        else:
            todo.append(file)
    if todo:
        if settings.offline:
            raise WeightsNotCachedError(
                f"model {spec.name!r} is not in the cache ({settings.model_dir(spec)}) and "
                f"offline mode is on (--offline or CUMX_OFFLINE); run: cumx download-weights "
                f"{spec.name} (on a machine with network, then copy {settings.model_dir(spec)} here)"
            )
        expected = expectations(spec, todo, settings)
        sizes = [expected[f].size for f in todo]
        total = sum(s for s in sizes if s is not None) if None not in sizes else None
        events.model_started(spec, settings.origin(spec), settings.model_dir(spec), total)
        for file in todo:
            results[file] = _download(Transfer(
                spec=spec, file=file, url=settings.file_url(spec, file),
                final=settings.file_path(spec, file), expected=expected[file], settings=settings,
                events=events, force=force))
    return [results[f] for f in spec.files]


def _download(t: Transfer) -> FileResult:
    """Download one file; a failure leaves no empty folder and names an unwritable cache."""
    try:
        return _download_locked(t)
    except OSError as exc:
        _remove_empty_folders(t.final.parent, t.settings)
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        # the cache folder cannot be made or written: read-only, or not a folder
        raise DownloadError(f"cannot download {t.spec.name}: cannot write to {t.final.parent} "
                            f"({exc.strerror or exc}); set --cache-dir / CUMX_CACHE_DIR to a "
                            "writable folder") from exc
    except BaseException:
        _remove_empty_folders(t.final.parent, t.settings)
        raise


def _remove_empty_folders(folder: Path, settings: WeightsSettings) -> None:
    """After a failure, leave no empty model folder (nor an empty weights folder or cache root)
    behind."""
    for path in (folder, settings.root, settings.cache_root):
        with contextlib.suppress(OSError):
            path.rmdir()  # only succeeds when empty


def _download_locked(t: Transfer) -> FileResult:
    with locked(t.final):
        if not t.force and entry_is_valid(t.final, t.spec, offline=False):  # another process did it
            result = FileResult(t.final, t.final.stat().st_size, "cached")
            t.events.file_finished(t.file, result)
            return result
        digest, note = _fetch_verified(t)
        sidecar(t.final).unlink(missing_ok=True)
        os.replace(t.part, t.final)
        write_sidecar(t.final, digest)
    result = FileResult(t.final, t.final.stat().st_size, "downloaded", note)
    t.events.file_finished(t.file, result)
    return result


def _fetch_verified(t: Transfer) -> tuple[str, str | None]:
    """Fetch into the ``.part`` and verify it: its sha256 and note (:func:`verify_download`).

    A ``.part`` that failed verification or filled the disk is deleted; one that a dropped
    connection left is kept for the next run to resume (unless it is empty).
    """
    try:
        fetch(t)
        return verify_download(t)
    except (ChecksumMismatchError, DiskFull):
        t.part.unlink(missing_ok=True)
        raise
    except BaseException:
        if t.part.exists() and t.part.stat().st_size == 0:
            t.part.unlink()
        raise

