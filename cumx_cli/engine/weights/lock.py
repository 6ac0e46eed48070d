"""A per-file lock across processes, so that two downloads never write the same cache file."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if sys.platform != "win32":
    import fcntl


def lock_path(final: Path) -> Path:
    """The lock file of ``final``: ``.<file>.lock`` beside it (not a cache entry)."""
    return final.with_name(f".{final.name}.lock")


@contextlib.contextmanager
def locked(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on :func:`lock_path` of ``final``, across processes.

    The lock file is removed on release; a waiter that then gets the lock on the removed file
    notices (its inode is no longer the path's) and locks the new one instead. Its folder is
    created (and created again if another process removed it while empty).
    """
    lock = lock_path(final)
    if sys.platform == "win32":  # no flock: a create-exclusive lock file, polled
        yield from _locked_exclusive(lock)
        return
    fd = _flock(lock)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _flock(lock: Path) -> int:
    """A descriptor holding ``flock`` on the file that is at ``lock`` now."""
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
            return fd
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
