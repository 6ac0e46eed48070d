"""MUSDB18 / MUSDB18-HQ tracks: where they are, and reading them without decoding whole files.

Evaluation finds its tracks, and reads each track's sources, here (:func:`find_tracks`);
training builds on it in :mod:`~cumx_cli.engine.data.layouts`, which also reads other layouts
(any audio format, no mixture file, a folder per source) and chooses the validation tracks.

Two layouts are detected under ``ROOT``:

* **MUSDB18-HQ** (and any decoded MUSDB18): ``ROOT/{train,test}/<track>/{mixture,<source>}.wav``.
  Read directly (``audio.io``); an excerpt seeks and reads only its samples.
* **MUSDB18** (``ROOT/{train,test}/<track>.stem.mp4``): five AAC streams in one file, decoded by
  FFmpeg through PyAV (``audio.decode``; no ffmpeg program is needed). As in the musdb package,
  stream k holds ``STEM_STREAMS[k]`` (mixture, drums, bass, other, vocals): the order is fixed,
  and the stream names a file's metadata may hold are not read. The mixture is its own stream,
  which in MUSDB18 is not the sum of the decoded stems. The samples are those musdb gives (it
  decodes to 16-bit, ``stempeg.read_stems(ffmpeg_format="s16le")``): the float decode rounded
  to 16 bits and clipped at full scale (AAC decodes above 1.0 where the master is loud), so
  that scores and training data equal musdb's, and those of its ``musdbconvert`` wav files.

The standard split takes the musdb package's 14 validation tracks out of ``train``; a folder may
override it (``ROOT/valid/``, ``ROOT/split.json``: :mod:`~cumx_cli.engine.data.layouts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from cumx_cli.engine.audio.io import (
    AudioInfo,
    probe,
    read_blocks,
    read_excerpt,
)
from cumx_cli.engine.data.track import Track as Track  # re-exported: the type of load_tracks
from cumx_cli.engine.data.track import as_musdb_samples
from cumx_cli.engine.errors import DatasetError

Split = Literal["train", "valid", "test"]

#: musdb's standard validation tracks (``musdb/configs/mus.yaml``), taken out of ``train``.
MUSDB_VALID = (
    "Actions - One Minute Smile", "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies", "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint", "Alexander Ross - Goodbye Bolero", "Fergessen - Nos Palpitants",
    "Leaf - Summerghost", "Skelpolu - Human Mistakes", "Young Griffo - Pennies",
    "ANiMAL - Rockshow", "James May - On The Line", "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)


#: MUSDB18's targets in musdb's own order (``musdb/configs/mus.yaml``): museval builds its lists,
#: and so its score files, in this order.
MUSDB_TARGETS: tuple[str, ...] = ("vocals", "drums", "bass", "other")
#: The subset folders of a MUSDB18(-HQ) root.
MUSDB_SUBSETS: tuple[str, ...] = ("train", "test")
#: The audio streams of a MUSDB18 ``.stem.mp4``: stream k holds ``STEM_STREAMS[k]`` (musdb's
#: ``stem_ids``, a fixed order: musdb reads no stream names, and neither does cumx).
STEM_STREAMS: tuple[str, ...] = ("mixture", "drums", "bass", "other", "vocals")
#: The suffix of a MUSDB18 track file; the track's name is the file name without it.
STEM_SUFFIX = ".stem.mp4"


@dataclass(frozen=True)
class TrackFolder:
    """One track, of either layout, and how to read each of its sources (or ``mixture``).

    ``folder`` is the track folder ``ROOT/<subset>/<name>`` of the wav layout, or the folder
    holding ``stem_file``, the track's ``ROOT/<subset>/<name>.stem.mp4``, in MUSDB18's.
    """

    name: str
    subset: str
    folder: Path
    stem_file: Path | None = None

    def stem_path(self, source: str) -> Path:
        """The file holding ``source`` (or ``mixture``): ``<folder>/<source>.wav``, or the
        ``.stem.mp4`` (whose stream :meth:`stream` says which)."""
        return self.folder / f"{source}.wav" if self.stem_file is None else self.stem_file

    def stream(self, source: str) -> int:
        """The audio stream of :meth:`stem_path` holding ``source``: 0 in a wav file.

        Raises:
            DatasetError: a ``.stem.mp4`` holds no such source.
        """
        if self.stem_file is None:
            return 0
        if source not in STEM_STREAMS:
            raise DatasetError(f"{self.stem_file}: a MUSDB18 .stem.mp4 holds "
                               f"{', '.join(STEM_STREAMS)}, not {source!r}")
        return STEM_STREAMS.index(source)

    def describe(self, source: str) -> str:
        """Where ``source`` is, for messages: its file, and in a ``.stem.mp4`` its stream."""
        if self.stem_file is None:
            return str(self.stem_path(source))
        return f"{self.stem_file} (stream {self.stream(source)}, {source})"

    def probe(self, source: str) -> AudioInfo:
        """The header of ``source`` (:func:`~cumx_cli.engine.audio.io.probe`; a ``.stem.mp4``
        stream is decoded once, to count its samples).

        Raises:
            AudioIOError: as ``probe``.
            DatasetError: a ``.stem.mp4`` holds no such source.
        """
        return probe(self.stem_path(source), stream=self.stream(source))

    def read(self, source: str, info: AudioInfo | None = None) -> torch.Tensor:
        """All samples of ``source``; ``info`` is its :meth:`probe` where the caller has it.

        Raises:
            AudioIOError: as ``audio.io.read_blocks``.

        Shapes:
            returns: (channel, time) float32
        """
        info = self.probe(source) if info is None else info
        return self._as_musdb(torch.cat(list(read_blocks(info)), dim=-1))

    def read_excerpt(self, source: str, start: int, frames: int) -> torch.Tensor:
        """``frames`` samples of ``source`` from ``start`` (only those decoded), zero-padded
        past the end; the caller checks them (``audio.io.read_excerpt``).

        Shapes:
            returns: (channel, frames) float32
        """
        data = read_excerpt(self.stem_path(source), start, frames, stream=self.stream(source))
        return self._as_musdb(data)

    def _as_musdb(self, samples: torch.Tensor) -> torch.Tensor:
        """A ``.stem.mp4``'s samples as musdb decodes them: rounded to 16 bits and clipped
        (``s16le``, what ffmpeg's float to int16 conversion does). Wav samples as they are."""
        if self.stem_file is None:
            return samples
        return as_musdb_samples(samples)


def is_track_folder(folder: Path) -> bool:
    """Whether ``folder`` is a track of the wav layout as :class:`TrackFolder` reads it: it holds
    ``mixture.wav`` and at least one of the :data:`MUSDB_TARGETS` (``<source>.wav``).

    A folder with only a ``mixture.wav`` is not a track (any song may be called that), and
    neither is a folder of stems alone (cumx's own output layout).
    """
    track = TrackFolder(folder.name, folder.parent.name, folder)
    return (track.stem_path("mixture").is_file()
            and any(track.stem_path(s).is_file() for s in MUSDB_TARGETS))


def is_stem_file(path: Path) -> bool:
    """Whether ``path`` is named as a MUSDB18 track file, ``<name>.stem.mp4``, and not hidden
    (macOS leaves ``._<name>.stem.mp4`` beside copied files)."""
    return path.name.endswith(STEM_SUFFIX) and len(path.name) > len(STEM_SUFFIX) \
        and not path.name.startswith(".")


def stem_track(path: Path, subset: str) -> TrackFolder:
    """The track of the ``.stem.mp4`` ``path``, named as musdb names it (the file name less
    ``.stem.mp4``)."""
    return TrackFolder(path.name[:-len(STEM_SUFFIX)], subset, path.parent, path)


def subset_folder(root: Path, subset: str) -> Path:
    """``root/subset``, checked to be a folder.

    Raises:
        DatasetError: it is not there.
    """
    folder = Path(root).expanduser() / subset
    if not folder.is_dir():
        raise DatasetError(f"{root}: no '{subset}' folder; --musdb expects a MUSDB18(-HQ) root "
                           "holding train/ and test/")
    return folder


def _stem_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_stem_file(p) and p.is_file())


def find_tracks(root: Path, subset: str, names: Sequence[str] | None = None) -> list[TrackFolder]:
    """The tracks of ``root/subset``, sorted by name, optionally only ``names`` (in the order
    given): its ``<name>.stem.mp4`` files where it holds any (MUSDB18), else its track folders
    (wav layout; hidden folders are not tracks).

    Raises:
        DatasetError: no such folder, both layouts in it, no track, or a requested name that is
            not there.
    """
    folder = subset_folder(root, subset)
    stem_files = _stem_files(folder)
    folders = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if stem_files:
        mixed = [p.name for p in folders if is_track_folder(p)]
        if mixed:
            raise DatasetError(f"{folder} holds both .stem.mp4 files and track folders "
                               f"({mixed[0]}/...); keep MUSDB18 and MUSDB18-HQ in separate roots")
        tracks = [stem_track(p, subset) for p in stem_files]
    else:
        tracks = [TrackFolder(p.name, subset, p) for p in folders]
    if names:
        known = {t.name: t for t in tracks}
        missing = [n for n in names if n not in known]
        if missing:
            raise DatasetError(f"track(s) not found in {folder}: {', '.join(missing)}")
        tracks = [known[n] for n in names]
    if not tracks:
        raise DatasetError(f"{folder}: no track folders found")
    return tracks


def load_tracks(root: Path, split: Split, sources: tuple[str, ...]) -> list[Track]:
    """The tracks of a split, checked: every track has a mixture and every source
    (:func:`cumx_cli.engine.data.layouts.load_split`, which reads every layout of training).

    Raises:
        DatasetError: a missing folder, an unknown layout, a missing stem, or an empty split.
    """
    from cumx_cli.engine.data.layouts import load_split  # layouts builds on this module

    return load_split(root, split, sources)
