"""The inputs of a ``separate`` run: files and folders expanded to audio files, and sharding.

A folder is searched recursively; each file found keeps its path relative to the folder as its
track name, so the output layout mirrors the input tree. The run's own output folder and hidden
files and folders (cumx's scratch files among them) are never searched, so ``cumx separate .``
run twice does not separate its own stems.

A MUSDB18-HQ track folder met in the search (``<track>/mixture.wav`` beside its stems,
:func:`~cumx_cli.engine.data.musdb.is_track_folder`) gives only its mixture, named after the
folder, so that a data set given as ``ROOT/test``, ``ROOT`` or one track is separated into
``OUT/<track>/<source>.wav``, the layout ``cumx eval --estimates OUT`` reads, and its reference
stems are never separated (they would be scored as estimates). A ``<track>.stem.mp4`` (MUSDB18,
or any stems file) is searched for without ``--ext``, unlike other ``.mp4`` files (videos): its
first stream, the mixture, is what is read, and a MUSDB18 root's are named as the wav layout's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cumx_cli.engine.audio.formats import AUDIO_SUFFIXES
from cumx_cli.engine.data.musdb import (
    MUSDB_SUBSETS,
    TrackFolder,
    is_stem_file,
    is_track_folder,
    stem_track,
)
from cumx_cli.engine.errors import ConfigError


@dataclass(frozen=True)
class InputFile:
    """An input and the track name used in output paths (relative path for folder inputs)."""

    path: Path
    track: str


@dataclass(frozen=True)
class MusdbFolder:
    """A folder input that holds MUSDB tracks, of which only the mixtures are separated.

    ``tracks`` counts the track folders and ``.stem.mp4`` files; ``others`` the other audio files
    found beside them (separated as in any folder); ``is_track`` says the input is itself one
    track folder.
    """

    folder: Path
    tracks: int
    others: int = 0
    is_track: bool = False

    def describe(self) -> str:
        """One line for the user: the folder was recognised, and what is separated."""
        if self.is_track:
            return f"{self.folder}: a MUSDB track folder, separating only its mixture.wav"
        plural = "s" if self.tracks != 1 else ""
        line = f"{self.folder}: MUSDB layout, separating only the mixtures of {self.tracks} track{plural}"
        if self.others:
            line += f" and {self.others} other audio file{'s' if self.others != 1 else ''}"
        return line


@dataclass(frozen=True)
class FoundInputs:
    """What :func:`find_inputs` found: the files to separate, in order, and the folder inputs
    recognised as MUSDB data (in the order given)."""

    files: list[InputFile]
    musdb: list[MusdbFolder]


def collect_inputs(paths: Iterable[Path], output: Path | None = None,
                   extra_suffixes: Iterable[str] = ()) -> list[InputFile]:
    """The files to separate: :func:`find_inputs` without the MUSDB folders' description."""
    return find_inputs(paths, output, extra_suffixes).files


def find_inputs(paths: Iterable[Path], output: Path | None = None,
                extra_suffixes: Iterable[str] = ()) -> FoundInputs:
    """Expand folders recursively to their audio files (sorted); keep files as given.

    A folder search picks up the suffixes of :data:`~cumx_cli.engine.audio.formats.AUDIO_SUFFIXES`
    and ``extra_suffixes`` (``".mp4"``...: video files are searched for only when asked), and
    ``NAME.stem.mp4`` files (stems files, whose first stream is the mixture; a track of the
    MUSDB18 layout), named ``NAME``.

    A path that does not exist is kept, so that it is reported as a failed input. In a folder,
    hidden files and folders (a leading dot: cumx's ``.NAME.HOST.PID.raw`` and ``.part`` scratch
    files among them) are skipped, and so is ``output``, the run's output folder, with
    everything under it: a folder separated into a folder inside it is not fed its own stems on
    the next run. A folder given as an input is searched even if it lies inside ``output``.

    A MUSDB track folder in a folder input (the input itself or a folder below it) gives only
    its ``mixture.wav``, and the rest of it is not searched. Its track name, and that of a
    ``.stem.mp4``, is its path relative to the input, less a leading ``train/`` or ``test/`` (so
    a MUSDB root's tracks are named as ``eval`` names them), or its own name if it is the input.
    A file given as an input is always separated, whatever its folder.

    Raises:
        ConfigError: ``output`` lies inside a track folder found, or inside the ``train`` or
            ``test`` folder holding one or a ``.stem.mp4``: stems written there would join the
            data set.
    """
    skip = None if output is None else Path(os.path.realpath(output))
    suffixes = AUDIO_SUFFIXES | {s.lower() if s.startswith(".") else f".{s.lower()}"
                                 for s in extra_suffixes}
    found: list[InputFile] = []
    musdb: list[MusdbFolder] = []
    for path in paths:
        if not path.is_dir():
            found.append(InputFile(path, _name(path)))
            continue
        files, tracks = _search(path, skip, suffixes)
        if output is not None:
            _check_output_outside(output, tracks)
        items = [InputFile(p, (p.parent / _name(p)).relative_to(path).as_posix()) for p in files]
        items += [InputFile(t.stem_path("mixture"), _track_name(path, t)) for t in tracks]
        found.extend(sorted(items, key=lambda item: item.path))
        if tracks:
            musdb.append(MusdbFolder(path, len(tracks), len(files), is_track=(
                tracks[0].stem_file is None and tracks[0].folder == path)))
    return FoundInputs(found, musdb)


def _name(path: Path) -> str:
    """A file's track name: its name less the suffix (and less ``.stem`` for ``.stem.mp4``)."""
    name = path.stem
    return name.removesuffix(".stem") if path.suffix.lower() == ".mp4" and name != ".stem" else name


def _search(folder: Path, skip: Path | None,
            suffixes: frozenset[str]) -> tuple[list[Path], list[TrackFolder]]:
    """The visible audio files below ``folder`` outside track folders, and the tracks (track
    folders and ``.stem.mp4`` files), not descending into hidden folders, track folders or
    ``skip`` (a resolved path)."""
    files: list[Path] = []
    tracks: list[TrackFolder] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if "mixture.wav" in filenames and is_track_folder(here):
            named = Path(os.path.abspath(here))  # "." has no name of its own
            tracks.append(TrackFolder(named.name, named.parent.name, here))
            dirnames[:] = []
            continue
        # Pruned in place, so os.walk never descends into them (symlinks are not followed).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and (skip is None or Path(os.path.realpath(here / d)) != skip)]
        for name in filenames:
            file = here / name
            if is_stem_file(file) and file.is_file():
                tracks.append(stem_track(file, Path(os.path.abspath(here)).name))
            elif (not name.startswith(".") and Path(name).suffix.lower() in suffixes
                    and file.is_file()):
                files.append(file)
    return files, tracks


def _track_name(root: Path, track: TrackFolder) -> str:
    """The output name of a track (folder or ``.stem.mp4``) found in the folder input ``root``."""
    where = track.folder if track.stem_file is None else track.folder / track.name
    parts = where.relative_to(root).parts
    if len(parts) == 2 and parts[0] in MUSDB_SUBSETS:  # ROOT/test/<track>
        return parts[1]
    return "/".join(parts) or track.name  # no parts: the input itself


def _check_output_outside(output: Path, tracks: list[TrackFolder]) -> None:
    """Refuse an output folder inside a track folder, or inside the subset folder holding one
    (or a ``.stem.mp4``, whose ``folder`` is that subset folder)."""
    resolved = Path(os.path.realpath(output))
    for track in tracks:
        real = Path(os.path.realpath(track.folder))
        folders: tuple[Path, ...]
        if track.stem_file is not None:
            folders = (real,) if track.subset in MUSDB_SUBSETS else ()
        else:
            folders = (real, real.parent) if track.subset in MUSDB_SUBSETS else (real,)
        for folder in folders:
            if resolved == folder or folder in resolved.parents:
                raise ConfigError(f"-o/--output {output} lies inside the MUSDB folder {folder}: "
                                  "stems written there would join the data set; choose an "
                                  "output folder outside it")


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
