"""The inputs of a ``separate`` run: files and folders expanded to audio files, and sharding.

A folder is searched recursively; each file found keeps its path relative to the folder as its
track name, so the output layout mirrors the input tree. The run's own output folder and hidden
files and folders (cumx's scratch files among them) are never searched, so ``cumx separate .``
run twice does not separate its own stems.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cumx_cli.engine.audio.io import AUDIO_SUFFIXES
from cumx_cli.engine.errors import ConfigError


@dataclass(frozen=True)
class InputFile:
    """An input and the track name used in output paths (relative path for folder inputs)."""

    path: Path
    track: str


def collect_inputs(paths: Iterable[Path], output: Path | None = None) -> list[InputFile]:
    """Expand folders recursively to their audio files (sorted); keep files as given.

    A path that does not exist is kept, so that it is reported as a failed input. In a folder,
    hidden files and folders (a leading dot: cumx's ``.NAME.PID.raw`` and ``.part`` scratch
    files among them) are skipped, and so is ``output``, the run's output folder, with
    everything under it: a folder separated into a folder inside it is not fed its own stems on
    the next run. A folder given as an input is searched even if it lies inside ``output``.
    """
    skip = None if output is None else Path(os.path.realpath(output))
    found: list[InputFile] = []
    for path in paths:
        if path.is_dir():
            files = sorted(_audio_files(path, skip))
            found.extend(InputFile(p, p.relative_to(path).with_suffix("").as_posix()) for p in files)
        else:
            found.append(InputFile(path, path.stem))
    return found


def _audio_files(folder: Path, skip: Path | None) -> Iterator[Path]:
    """The visible audio files below ``folder``, not descending into hidden folders or ``skip``
    (a resolved path)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruned in place, so os.walk never descends into them (symlinks are not followed).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and (skip is None or Path(os.path.realpath(os.path.join(dirpath, d))) != skip)]
        for name in filenames:
            file = Path(dirpath) / name
            if (not name.startswith(".") and Path(name).suffix.lower() in AUDIO_SUFFIXES
                    and file.is_file()):
                yield file


def shard(items: list[InputFile], spec: str) -> list[InputFile]:
    """The K-th of N shares of the inputs, ``spec`` being ``"K/N"`` (1 <= K <= N).

    Inputs are sorted by path and dealt round-robin (input i goes to share ``i % N + 1``), so
    the N shares differ in size by at most one and together hold every input exactly once,
    whichever machine computes them.

    Raises:
        ConfigError: ``spec`` is not ``K/N`` with 1 <= K <= N.
    """
    try:
        k_text, n_text = spec.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected K/N, e.g. 2/8") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {spec!r}: K must be between 1 and N")
    ordered = sorted(items, key=lambda item: str(item.path))
    return [item for i, item in enumerate(ordered) if i % n == k - 1]
