"""One file on its way into the cache: what it must match, and everything its download needs.

:class:`Transfer` is passed whole between the steps of a download (fetch, verify, move into
place) instead of each step taking the spec, file, URL, paths, expectations, settings and hooks
one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cumx_cli.engine.events import DownloadEvents
from cumx_cli.engine.weights.cache import PART_SUFFIX, WeightsSettings
from cumx_cli.engine.weights.registry import WeightsSpec


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must match; None where nothing is known.

    Attributes:
        size: bytes.
        md5: hex digest (Zenodo's record API publishes md5).
        sha256: hex digest (a mirror's ``.sha256`` record).
        source: where the expectations come from, for messages.
    """

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Transfer:
    """The download of one file of a published model.

    Attributes:
        spec: the model.
        file: the file's name (as in the registry, on the server and in the cache).
        url: where it is fetched from (the origin or the mirror).
        final: its path in the cache.
        expected: what it must match.
        settings: cache, mirror, timeouts and retries.
        events: progress hooks.
        force: download again even when another process just cached it.
    """

    spec: WeightsSpec
    file: str
    url: str
    final: Path
    expected: Expected
    settings: WeightsSettings
    events: DownloadEvents
    force: bool = False

    @property
    def part(self) -> Path:
        """The partial file the bytes are streamed into (``<file>.part``, resumable)."""
        return self.final.with_name(self.final.name + PART_SUFFIX)
