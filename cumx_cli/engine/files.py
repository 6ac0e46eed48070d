"""Writing files so that a final path only ever holds a complete file.

Every writer in the engine writes to a hidden temporary name in the final file's folder (so the
rename is atomic) and renames it into place when complete; a killed run leaves at most the
hidden temporary file, never a half-written file at the final path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temp_path(final: Path) -> Path:
    """The hidden temporary name for ``final``: ``.NAME.PID.part`` in the same folder."""
    return final.with_name(f".{final.name}.{os.getpid()}.part")


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
