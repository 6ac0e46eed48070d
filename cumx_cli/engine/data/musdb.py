"""MUSDB18 / MUSDB18-HQ tracks: where they are, and reading them without decoding whole files.

This is the one place that knows the dataset's layout: training (:func:`load_tracks`) and
evaluation (:func:`find_tracks`) both find their tracks, and read each track's sources, here.

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

The standard split takes the musdb package's 14 validation tracks out of ``train``. A folder may
override it with ``ROOT/split.json`` (``{"valid": [names]}``), as cumx's synthetic data does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from cumx_cli.engine.audio.io import (
    AudioInfo,
    count_audio_streams,
    probe,
    read_blocks,
    read_excerpt,
)
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
        return samples.mul(32768.0).round_().clamp_(-32768.0, 32767.0).div_(32768.0)


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


@dataclass
class Track:
    """One training track: its name, sample rate, length, and where its sources are."""

    name: str
    rate: int
    frames: int
    #: the file of each source and of ``mixture`` (one ``.stem.mp4`` for all, in MUSDB18)
    files: dict[str, Path]
    location: TrackFolder

    def read(self, source: str, start: int = 0, frames: int | None = None) -> torch.Tensor:
        """Samples of ``source`` (or ``mixture``) from ``start``: (channel, time) float32.

        Raises:
            DatasetError: the file cannot be decoded, or the samples read hold a NaN or an
                infinity (checked on every read rather than by a scan of the whole dataset at
                start-up, so a bad sample stops training before it reaches the model).
        """
        frames = self.frames - start if frames is None else frames
        try:  # a stem shorter than the mixture is padded with silence
            data = self.location.read_excerpt(source, start, frames)
        except AudioIOError as exc:
            raise DatasetError(str(exc)) from exc
        finite = torch.isfinite(data).all(dim=0)
        if not bool(finite.all()):
            first = start + int(torch.argmin(finite.to(torch.uint8)))
            raise DatasetError(f"{self.location.describe(source)}: contains NaN or infinite "
                               f"samples (first at {first / self.rate:.3f} s)")
        return data


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
    return Track(track.name, info.sample_rate, info.frames, files, track)


def _stem_track(track: TrackFolder, sources: tuple[str, ...]) -> Track:
    """A ``.stem.mp4`` track, checked to hold the five streams. Only the mixture is decoded
    here (for its exact length, about 0.1 s of CPU per minute): MUSDB18's streams are equally
    long, and a shorter stream would be padded with silence, as a shorter wav stem is."""
    file = track.stem_file
    assert file is not None, "a stems-file track"
    unknown = [s for s in sources if s not in STEM_STREAMS[1:]]
    if unknown:
        raise DatasetError(f"{file}: a MUSDB18 .stem.mp4 holds {', '.join(STEM_STREAMS[1:])}, "
                           f"not {', '.join(unknown)}; train on those, or on wav track folders")
    try:
        count = count_audio_streams(file)
        if count < len(STEM_STREAMS):
            raise DatasetError(f"{file}: has {count} audio stream{'s' * (count != 1)}; a MUSDB18 "
                               f".stem.mp4 holds {len(STEM_STREAMS)} ({', '.join(STEM_STREAMS)})")
        info = track.probe("mixture")
    except AudioIOError as exc:
        raise DatasetError(str(exc)) from exc
    return Track(track.name, info.sample_rate, info.frames,
                 dict.fromkeys(("mixture", *sources), file), track)


def load_tracks(root: Path, split: Split, sources: tuple[str, ...]) -> list[Track]:
    """The tracks of a split, checked: every track has a mixture and every source.

    Raises:
        DatasetError: a missing folder, an unknown layout, a missing stem, or an empty split.
    """
    root = Path(root).expanduser()
    found = find_tracks(root, "test" if split == "test" else "train")
    if split != "test":  # before any file is opened: the other split's are not read
        valid = _valid_names(root)
        found = [t for t in found if (t.name in valid) == (split == "valid")]
    tracks = [_wav_track(t, sources) if t.stem_file is None else _stem_track(t, sources)
              for t in found]
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
