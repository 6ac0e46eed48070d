"""How a weights file is recognised and checked: streamed hashes, the sha256 prefix some file
names carry, and the HDF5 signature.

The one home of each: the cache, the downloader and the Open-Unmix folder loader all use these.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: The first eight bytes of every HDF5 file (NNabla's ``.h5`` parameters).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: ``<name>-<sha256 prefix>.<ext>``, torch.hub's convention (``vocals-b62c91ce.pth``).
_HASH_IN_NAME = re.compile(r"^(?P<name>.+?)-(?P<hash>[0-9a-f]{8,64})\.\w+$")

_BLOCK = 1 << 20


def file_hashes(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file by ``hashlib`` algorithm name, read once in 1 MiB blocks."""
    # md5 only compares with Zenodo's published checksums; FIPS builds refuse it otherwise
    digests = {name: hashlib.new(name, usedforsecurity=name != "md5") for name in algorithms}
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, streamed."""
    return file_hashes(path)["sha256"]


def split_hash_in_name(file: str) -> tuple[str, str] | None:
    """``(name, sha256 prefix)`` of a file name such as ``vocals-b62c91ce.pth``, or None when the
    name carries no hash (torch.hub's ``check_hash`` convention)."""
    found = _HASH_IN_NAME.match(file)
    return (found.group("name"), found.group("hash")) if found else None


def is_hdf5(path: Path) -> bool:
    """Whether the file starts with the HDF5 signature."""
    with Path(path).open("rb") as f:
        return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
