"""The weights cache: where files live, and the sha256 record kept beside each verified file.

Layout: ``<cache>/<model>/<file>`` with ``<cache>/<model>/<file>.sha256`` next to it, in
``sha256sum`` format, written only after the file was verified. A file without its ``.sha256`` is
not a cache entry (an interrupted or manual copy); one whose bytes no longer match is corrupt.
Partial downloads are ``<file>.part`` and locks ``.<file>.lock``; neither counts as an entry.

The same layout served over plain HTTP is a *mirror* (``CUMX_WEIGHTS_MIRROR``): the ``.sha256``
files tell the downloader what to expect.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cumx_cli.engine.errors import ChecksumMismatchError
from cumx_cli.engine.weights.registry import ZENODO_URL, WeightsSpec

SIDECAR_SUFFIX = ".sha256"
PART_SUFFIX = ".part"


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("cumx")/weights`` (e.g. ``~/.cache/cumx/weights`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("cumx")) / "weights"


@dataclass(frozen=True)
class WeightsSettings:
    """Where weights are cached and how they may be fetched.

    The command-line layer builds this from flags and the ``CUMX_*`` environment variables; the
    engine never reads the environment.

    Attributes:
        cache_dir: the cache folder; None means :func:`default_cache_dir`.
        offline: never touch the network; a missing model is an error.
        mirror: a plain HTTP folder with the cache layout, used instead of the origin.
        zenodo_url: Zenodo's base URL (tests point it at a local server).
        timeout: seconds to wait to connect and for each read before giving up.
        retries: how many times a download that dropped after making progress is resumed.
    """

    cache_dir: Path | None = None
    offline: bool = False
    mirror: str | None = None
    zenodo_url: str = ZENODO_URL
    timeout: float = 15.0
    retries: int = 3
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        root = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        object.__setattr__(self, "root", root)

    def model_dir(self, spec: WeightsSpec) -> Path:
        return self.root / spec.name

    def file_path(self, spec: WeightsSpec, file: str) -> Path:
        return self.model_dir(spec) / file

    def model_path(self, spec: WeightsSpec) -> Path:
        """What the loader is given: the folder for Open-Unmix models, else the single file."""
        return self.model_dir(spec) if spec.is_folder else self.file_path(spec, spec.files[0])


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(path: Path) -> str | None:
    """The sha256 recorded for ``path``, or None without a (readable) record."""
    try:
        text = sidecar(path).read_text().strip()
    except OSError:
        return None
    digest = text.split()[0].lower() if text else ""
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def write_sidecar(path: Path, digest: str) -> None:
    """Record ``digest`` for ``path`` (atomically; ``sha256sum -c`` reads it)."""
    target = sidecar(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def is_cached(settings: WeightsSettings, spec: WeightsSpec) -> bool:
    """Every file and its sha256 record are present (contents are checked by :func:`verify_cached`)."""
    return all(_has_entry(settings.file_path(spec, f)) for f in spec.files)


def _has_entry(path: Path) -> bool:
    return path.is_file() and read_sidecar(path) is not None


def verify_cached(settings: WeightsSettings, spec: WeightsSpec, file: str) -> None:
    """Re-hash a cached file and compare it with its record.

    Raises:
        ChecksumMismatchError: the bytes changed since they were verified (names the fix).
    """
    path = settings.file_path(spec, file)
    expected = read_sidecar(path)
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path}: the cached file is corrupt (sha256 {actual[:12]}..., recorded "
            f"{(expected or '?')[:12]}...); run: cumx download-weights {spec.name} --force"
        )


def cached_size(settings: WeightsSettings, spec: WeightsSpec) -> int | None:
    """Total bytes of a cached model, or None when it is not (fully) cached."""
    if not is_cached(settings, spec):
        return None
    return sum(settings.file_path(spec, f).stat().st_size for f in spec.files)
