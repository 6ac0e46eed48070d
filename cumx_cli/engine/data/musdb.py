"""MUSDB18 / MUSDB18-HQ tracks: where they are, and reading them without decoding whole files.

This is the one place that knows the dataset's layout: training (:func:`load_tracks`) and
evaluation (:func:`find_tracks`) both find their tracks, and each track's files, here.

Two layouts are detected under ``ROOT``:

* **MUSDB18-HQ** (and any decoded MUSDB18): ``ROOT/{train,test}/<track>/{mixture,<source>}.wav``.
  Read directly (``audio.io``); an excerpt seeks and reads only its samples.
* **MUSDB18** (``ROOT/{train,test}/<track>.stem.mp4``): read through the ``musdb`` package
  (stempeg and ffmpeg), which seeks with ffmpeg; imported only for this layout.

The standard split takes the musdb package's 14 validation tracks out of ``train``. A folder may
override it with ``ROOT/split.json`` (``{"valid": [names]}``), as cumx's synthetic data does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from cumx_cli.engine.audio.io import probe, read_excerpt
from cumx_cli.engine.errors import AudioIOError, DatasetError

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


@dataclass(frozen=True)
class TrackFolder:
    """One track of the wav layout: the folder ``ROOT/<subset>/<name>``."""

    name: str
    subset: str
    folder: Path

    def stem_path(self, source: str) -> Path:
        """The file of ``source`` (or ``mixture``): ``<folder>/<source>.wav``."""
        return self.folder / f"{source}.wav"


def is_track_folder(folder: Path) -> bool:
    """Whether ``folder`` is a track of the wav layout as :class:`TrackFolder` reads it: it holds
    ``mixture.wav`` and at least one of the :data:`MUSDB_TARGETS` (``<source>.wav``).

    A folder with only a ``mixture.wav`` is not a track (any song may be called that), and
    neither is a folder of stems alone (cumx's own output layout).
    """
    track = TrackFolder(folder.name, folder.parent.name, folder)
    return (track.stem_path("mixture").is_file()
            and any(track.stem_path(s).is_file() for s in MUSDB_TARGETS))


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


def _is_stem_layout(folder: Path) -> bool:
    return any(folder.glob("*.stem.mp4"))


def find_tracks(root: Path, subset: str, names: Sequence[str] | None = None) -> list[TrackFolder]:
    """The track folders of ``root/subset`` (wav layout), sorted by name, optionally only ``names``
    (in the order given). Hidden folders are not tracks.

    Raises:
        DatasetError: no such folder, a stem-file (``.stem.mp4``) dataset, no track, or a
            requested name that is not there.
    """
    folder = subset_folder(root, subset)
    if _is_stem_layout(folder):
        raise DatasetError(f"{folder} holds .stem.mp4 files; cumx reads the MUSDB18-HQ wav "
                           "layout here: convert with `musdbconvert ROOT ROOT-WAV` (from musdb)")
    tracks = [TrackFolder(p.name, subset, p) for p in sorted(folder.iterdir())
              if p.is_dir() and not p.name.startswith(".")]
    if names:
        known = {t.name: t for t in tracks}
        missing = [n for n in names if n not in known]
        if missing:
            raise DatasetError(f"track(s) not found in {folder}: {', '.join(missing)}")
        tracks = [known[n] for n in names]
    if not tracks:
        raise DatasetError(f"{folder}: no track folders found")
    return tracks


@dataclass
class Track:
    """One track: its name, sample rate, length, and how to read a source."""

    name: str
    rate: int
    frames: int
    files: dict[str, Path] = field(default_factory=dict)  # wav layout: name -> file
    stem: Any = None  # stems layout: a musdb Track (musdb has no type hints)

    def read(self, source: str, start: int = 0, frames: int | None = None) -> torch.Tensor:
        """Samples of ``source`` (or ``mixture``) from ``start``: (channel, time) float32.

        Raises:
            DatasetError: the file cannot be decoded, or the samples read hold a NaN or an
                infinity (checked on every read rather than by a scan of the whole dataset at
                start-up, so a bad sample stops training before it reaches the model).
        """
        frames = self.frames - start if frames is None else frames
        if self.stem is not None:
            data = self._read_stem(source, start, frames)
        else:
            try:  # a stem shorter than the mixture is padded with silence
                data = read_excerpt(self.files[source], start, frames)
            except AudioIOError as exc:
                raise DatasetError(str(exc)) from exc
        finite = torch.isfinite(data).all(dim=0)
        if not bool(finite.all()):
            first = start + int(torch.argmin(finite.to(torch.uint8)))
            where = self.files[source] if self.files else \
                f"{self.stem.path} ({source})"
            raise DatasetError(f"{where}: contains NaN or infinite samples "
                               f"(first at {first / self.rate:.3f} s)")
        return data

    def _read_stem(self, source: str, start: int, frames: int) -> torch.Tensor:
        track = self.stem
        track.chunk_start = start / self.rate
        track.chunk_duration = frames / self.rate
        # musdb decodes only the chunk (ffmpeg seeks) for the track and its sources
        audio = track.audio if source == "mixture" else track.sources[source].audio
        data = torch.from_numpy(np.ascontiguousarray(audio.T, dtype=np.float32))
        if data.shape[-1] < frames:
            data = torch.nn.functional.pad(data, (0, frames - data.shape[-1]))
        return data[..., :frames]


def _wav_track(track: TrackFolder, sources: tuple[str, ...]) -> Track:
    names = ("mixture", *sources)
    missing = [n for n in names if not track.stem_path(n).is_file()]
    if missing:
        raise DatasetError(f"{track.folder}: missing {', '.join(f'{m}.wav' for m in missing)}; each "
                           f"track folder needs mixture.wav and one wav per source")
    files = {n: track.stem_path(n) for n in names}
    try:  # empty, undecodable, truncated or no samples: reading would crash or pad silently
        infos = {n: probe(file) for n, file in files.items()}
    except AudioIOError as exc:
        raise DatasetError(str(exc)) from exc
    info = infos["mixture"]
    return Track(track.name, info.sample_rate, info.frames, files)


def _stem_tracks(root: Path, subset: str, sources: tuple[str, ...]) -> list[Track]:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise DatasetError(f"{root}: MUSDB18 .stem.mp4 files need ffmpeg and ffprobe on PATH "
                           "(e.g. apt-get install ffmpeg), or decode them to wav with musdbconvert")
    try:
        import musdb  # noqa: PLC0415 - heavy, and needs ffmpeg: only for this layout
    except ImportError as exc:
        raise DatasetError("reading MUSDB18 .stem.mp4 files needs the musdb package "
                           "(pip install musdb)") from exc
    db = musdb.DB(root=str(root), subsets=subset, is_wav=False)
    tracks = []
    for t in db.tracks:
        missing = [s for s in sources if s not in t.sources]
        if missing:
            raise DatasetError(f"{t.path}: has no source {', '.join(missing)}")
        tracks.append(Track(t.name, int(t.rate), int(t.duration * t.rate), stem=t))
    return tracks


def load_tracks(root: Path, split: Split, sources: tuple[str, ...]) -> list[Track]:
    """The tracks of a split, checked: every track has a mixture and every source.

    Raises:
        DatasetError: a missing folder, an unknown layout, a missing stem, or an empty split.
    """
    root = Path(root).expanduser()
    subset = "test" if split == "test" else "train"
    if _is_stem_layout(subset_folder(root, subset)):
        tracks = _stem_tracks(root, subset, sources)
    else:
        tracks = [_wav_track(t, sources) for t in find_tracks(root, subset)]
    if split != "test":
        valid = _valid_names(root)
        tracks = [t for t in tracks if (t.name in valid) == (split == "valid")]
    if not tracks:
        raise DatasetError(f"{root}: the {split} split has no tracks{_split_hint(root, split)}")
    rates = {t.rate for t in tracks}
    if len(rates) != 1:
        raise DatasetError(f"{root}: tracks have different sample rates {sorted(rates)}")
    return tracks


def _split_hint(root: Path, split: Split) -> str:
    """How to fill an empty train or valid split: which names ``ROOT/split.json`` must hold."""
    split_file = root / "split.json"
    if split == "test":
        return ""
    if split == "train":
        return f" ({split_file} puts every track in 'valid': leave some out of it)"
    if split_file.is_file():
        return f" (none of the names in {split_file} is a track folder of train/)"
    return (f" (none of train/'s tracks is one of musdb's validation tracks): name some in "
            f'{split_file}, as {{"valid": ["track", ...]}}')


def _valid_names(root: Path) -> set[str]:
    """The validation tracks: ``ROOT/split.json``'s, else musdb's standard ones."""
    split_file = root / "split.json"
    if not split_file.is_file():
        return set(MUSDB_VALID)
    try:
        return set(json.loads(split_file.read_text())["valid"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{split_file}: expected {{\"valid\": [track names]}}") from exc
