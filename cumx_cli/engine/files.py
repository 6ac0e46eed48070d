"""Writing files so that a final path only ever holds a complete file, and cleaning up after
runs that were killed.

Every writer in the engine writes to a hidden temporary name in the final file's folder (so the
rename is atomic) and renames it into place when complete; a killed run leaves at most the
hidden temporary file, never a half-written file at the final path.

Hidden working files (the writers' ``.part`` files here, the separation's ``.raw`` scratch in
:mod:`cumx_cli.engine.inference.scratch`) are named ``.NAME.HOST.PID.KIND``: the process id
keeps a rerun's files apart from a killed run's, and the host keeps apart processes of several
machines writing into one shared (NFS) folder, where a process id says nothing about another
machine. :func:`remove_stale_scratch` removes, by those names, what killed runs left behind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Kinds of hidden working files that :func:`remove_stale_scratch` removes.
SCRATCH_KINDS = ("part", "raw")
#: A hidden working file: ``.NAME.TOKEN.PID.KIND``, where TOKEN is the host (or, in the old
#: names of cumx before the host was added, the final file's suffix: ``.NAME.PID.KIND``).
_HIDDEN = re.compile(r"^\.(?P<rest>.+)\.(?P<pid>[0-9]+)\.(?P<kind>[a-z]+)$")
#: The stem suffixes of the old names (``.vocals.wav.PID.raw``), which no host token takes.
_OLD_NAME_SUFFIXES = (".wav", ".flac", ".mp3")
#: How long an old-format file must have been left unmodified before it is removed.
OLD_NAME_MIN_AGE = 24 * 3600.0
#: The inode of the first (the host's own) PID namespace on Linux (``PROC_PID_INIT_INO``).
_INIT_PID_NAMESPACE = "pid:[4026531836]"


@functools.cache
def host_token() -> str:
    """This machine in hidden file names: the host name with every character outside
    ``[A-Za-z0-9-]`` made ``-`` (so it holds no dot and splits off a name unambiguously).

    A process in a PID namespace of its own (a container) adds the namespace's number: a
    container sharing the host's name (``--network host``) sees other process ids than the
    host, so a process id it cannot find may still be running next to it.
    """
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux, or no /proc: no PID namespaces to tell apart
        return host
    if namespace == _INIT_PID_NAMESPACE:
        return host
    return f"{host}-{re.sub(r'[^0-9]', '', namespace)}"


def hidden_path(final: Path, kind: str) -> Path:
    """The hidden working file of this process for ``final``: ``.NAME.HOST.PID.KIND`` in the
    same folder (``kind`` is ``part`` for writers, ``raw`` for separation scratch)."""
    return final.with_name(f".{final.name}.{host_token()}.{os.getpid()}.{kind}")


def temp_path(final: Path) -> Path:
    """The hidden temporary name for ``final``: ``.NAME.HOST.PID.part`` in the same folder."""
    return hidden_path(final, "part")


@contextlib.contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """Yield :func:`temp_path` of ``final`` to write; when the block ends without an error it
    is renamed to ``final``. The temporary file never outlives the block."""
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(OSError):  # e.g. the parent is not a folder
            tmp.unlink(missing_ok=True)


def remove_stale_scratch(folder: Path) -> list[Path]:
    """Remove the hidden ``.part``/``.raw`` files in ``folder`` that killed runs left behind;
    returns the files removed. Never raises: a file that cannot be removed stays.

    A file goes only when the process that wrote it can be known to be gone:

    - ``.NAME.HOST.PID.KIND`` files go when HOST is this machine (:func:`host_token`) and no
      process PID runs here. Files of other hosts stay whatever their age: their process may
      be running there, writing into a shared folder.
    - Old names without a host (``.NAME.PID.KIND``, NAME a stem file, from cumx versions before
      the host was added) go when no process PID runs here *and* the file has not been
      modified for :data:`OLD_NAME_MIN_AGE`. A process id of this host says nothing about
      another machine's old cumx writing into the same shared folder, but a running separation
      writes or renames its working files within minutes, so a day-old one is a leftover.

    A process id that another process has taken since keeps its file until that one ends too.
    Where process ids cannot be checked (not POSIX) nothing is removed.
    """
    removed: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
    except OSError:  # gone, or not readable: nothing to clean
        return []
    for name in names:
        match = _HIDDEN.match(name)
        if match is None or match["kind"] not in SCRATCH_KINDS:
            continue
        path = folder / name
        if _is_stale(path, match["rest"], int(match["pid"])):
            try:
                path.unlink()
            except OSError as exc:
                log.debug("cannot remove the stale %s (%s)", path, exc.strerror or exc)
                continue
            log.debug("removed %s, left by process %s that no longer runs", path, match["pid"])
            removed.append(path)
    return removed


def _is_stale(path: Path, rest: str, pid: int) -> bool:
    """Whether the working file ``path`` (``.REST.PID.KIND``) was left by a process gone."""
    if rest.endswith(f".{host_token()}") and len(rest) > len(host_token()) + 1:
        return not _process_alive(pid)
    if rest.endswith(_OLD_NAME_SUFFIXES):
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return False
        return age > OLD_NAME_MIN_AGE and not _process_alive(pid)
    return False  # another host's file, or no name of cumx's


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; True whenever that cannot be known.

    ``kill(pid, 0)`` sends nothing, it only checks: ``ProcessLookupError`` means no such
    process, ``PermissionError`` one of another user. Windows' ``os.kill`` would send a real
    event, so it is not asked there.
    """
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive; anything else: unknown
        return True
    return True


def disk_full_reason(path: Path) -> str | None:
    """"No space left on device" if the file system holding ``path`` (a file or folder that
    may not exist yet) has no free space left, else None.

    For writers that do not pass the OS's reason on (libsndfile says "System error.", torch's
    zip writer an internal assertion).
    """
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free == 0:
            return os.strerror(errno.ENOSPC)
    return None
