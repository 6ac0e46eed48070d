"""The weights cache: where files live, and the sha256 record kept beside each verified file.

Layout: ``<cache>/<model>/<file>`` with ``<cache>/<model>/<file>.sha256`` next to it, in
``sha256sum`` format, written only after the file was verified. A file without its ``.sha256`` is
not a cache entry (an interrupted or manual copy); one whose bytes no longer match is corrupt.
Partial downloads are ``<file>.part`` and locks ``.<file>.lock``; neither counts as an entry.

The same layout served over plain HTTP is a *mirror* (``CUMX_WEIGHTS_MIRROR``): the ``.sha256``
files tell the downloader what to expect.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cumx_cli.engine.errors import ChecksumMismatchError
from cumx_cli.engine.weights.integrity import file_sha256
from cumx_cli.engine.weights.registry import ZENODO_URL, WeightsSpec

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".sha256"
PART_SUFFIX = ".part"


def default_cache_dir() -> Path:
    """``platformdirs.user_cache_dir("cumx")`` (e.g. ``~/.cache/cumx`` on Linux), the cache root:
    weights are in its ``weights`` folder."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("cumx"))


@dataclass(frozen=True)
class WeightsSettings:
    """Where weights are cached and how they may be fetched.

    The command-line layer builds this from flags and the ``CUMX_*`` environment variables; the
    engine never reads the environment.

    Attributes:
        cache_dir: the cache root (``--cache-dir`` / ``CUMX_CACHE_DIR``); None means
            :func:`default_cache_dir`. The weights are in its ``weights`` folder, :attr:`root`.
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
    cache_root: Path = field(init=False)
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        top = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        object.__setattr__(self, "cache_root", top)
        object.__setattr__(self, "root", top / "weights")

    def model_dir(self, spec: WeightsSpec) -> Path:
        return self.root / spec.name

    def file_path(self, spec: WeightsSpec, file: str) -> Path:
        return self.model_dir(spec) / file

    def model_path(self, spec: WeightsSpec) -> Path:
        """What the loader is given: the folder for Open-Unmix models, else the single file."""
        return self.model_dir(spec) if spec.is_folder else self.file_path(spec, spec.files[0])

    def origin(self, spec: WeightsSpec) -> str:
        """Where the files of ``spec`` come from, for messages: the mirror, or the origin."""
        return self.mirror or spec.origin(self.zenodo_url)

    def file_url(self, spec: WeightsSpec, file: str) -> str:
        """Where ``file`` of ``spec`` is downloaded from: the mirror's copy when one is set."""
        if self.mirror:
            return f"{self.mirror.rstrip('/')}/{spec.name}/{file}"
        return spec.file_url(file, self.zenodo_url)


def sidecar(path: Path) -> Path:
    """The sha256 record beside ``path`` (``<file>.sha256``)."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


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
    """Every file and its sha256 record are present (contents are checked by :func:`entry_is_valid`)."""
    return all(_has_entry(settings.file_path(spec, f)) for f in spec.files)


def _has_entry(path: Path) -> bool:
    return path.is_file() and read_sidecar(path) is not None


def entry_is_valid(path: Path, spec: WeightsSpec, *, offline: bool) -> bool:
    """Whether ``path`` is a cache entry: present, recorded, and its bytes re-hash to the record.

    A corrupt entry is deleted (so that it is fetched again), or, offline, reported.

    Raises:
        ChecksumMismatchError: offline, and the bytes changed since they were verified (names
            the fix).
    """
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


def cached_size(settings: WeightsSettings, spec: WeightsSpec) -> int | None:
    """Total bytes of a cached model, or None when it is not (fully) cached."""
    if not is_cached(settings, spec):
        return None
    return sum(settings.file_path(spec, f).stat().st_size for f in spec.files)
