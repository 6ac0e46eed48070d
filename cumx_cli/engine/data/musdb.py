"""MUSDB18 / MUSDB18-HQ tracks, read without decoding whole files where the format allows.

Two layouts are detected under ``ROOT``:

* **MUSDB18-HQ** (and any decoded MUSDB18): ``ROOT/{train,test}/<track>/{mixture,<source>}.wav``.
  Read directly with soundfile; an excerpt seeks and reads only its samples.
* **MUSDB18** (``ROOT/{train,test}/<track>.stem.mp4``): read through the ``musdb`` package
  (stempeg and ffmpeg), which seeks with ffmpeg; imported only for this layout.

The standard split takes the musdb package's 14 validation tracks out of ``train``. A folder may
override it with ``ROOT/split.json`` (``{"valid": [names]}``), as cumx's synthetic data does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from cumx_cli.engine.audio.io import probe
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


@dataclass
class Track:
    """One track: its name, sample rate, length, and how to read a source."""

    name: str
    rate: int
    frames: int
    files: dict[str, Path] = field(default_factory=dict)  # wav layout: name -> file
    stem: object | None = None  # stems layout: a musdb Track

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
            try:
                array, _ = sf.read(str(self.files[source]), start=start, frames=frames,
                                   dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise DatasetError(f"{self.files[source]}: cannot read ({exc})") from exc
            if array.shape[0] < frames:  # a stem shorter than the mixture: pad with silence
                array = np.pad(array, ((0, frames - array.shape[0]), (0, 0)))
            data = torch.from_numpy(np.ascontiguousarray(array.T))
        finite = torch.isfinite(data).all(dim=0)
        if not bool(finite.all()):
            first = start + int(torch.argmin(finite.to(torch.uint8)))
            where = self.files[source] if self.files else \
                f"{self.stem.path} ({source})"  # type: ignore[attr-defined]
            raise DatasetError(f"{where}: contains NaN or infinite samples "
                               f"(first at {first / self.rate:.3f} s)")
        return data

    def _read_stem(self, source: str, start: int, frames: int) -> torch.Tensor:
        track = self.stem
        track.chunk_start = start / self.rate  # type: ignore[attr-defined]
        track.chunk_duration = frames / self.rate  # type: ignore[attr-defined]
        # musdb decodes only the chunk (ffmpeg seeks) for the track and its sources
        audio = track.audio if source == "mixture" else track.sources[source].audio  # type: ignore[attr-defined]
        data = torch.from_numpy(np.ascontiguousarray(audio.T, dtype=np.float32))
        if data.shape[-1] < frames:
            data = torch.nn.functional.pad(data, (0, frames - data.shape[-1]))
        return data[..., :frames]


def _wav_tracks(folder: Path, sources: tuple[str, ...]) -> list[Track]:
    tracks = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        missing = [n for n in ("mixture", *sources) if not (path / f"{n}.wav").is_file()]
        if missing:
            raise DatasetError(f"{path}: missing {', '.join(f'{m}.wav' for m in missing)}; each "
                               f"track folder needs mixture.wav and one wav per source")
        files = {n: path / f"{n}.wav" for n in ("mixture", *sources)}
        try:  # empty, undecodable, truncated or no samples: reading would crash or pad silently
            infos = {n: probe(file) for n, file in files.items()}
        except AudioIOError as exc:
            raise DatasetError(str(exc)) from exc
        info = infos["mixture"]
        tracks.append(Track(path.name, info.sample_rate, info.frames, files))
    return tracks


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
    folder = root / subset
    if not folder.is_dir():
        raise DatasetError(f"{root}: no '{subset}' folder; --musdb expects a MUSDB18(-HQ) root "
                           f"holding train/ and test/")
    if any(folder.glob("*.stem.mp4")):
        tracks = _stem_tracks(root, subset, sources)
    else:
        tracks = _wav_tracks(folder, sources)
    if split != "test":
        valid = set(MUSDB_VALID)
        split_file = root / "split.json"
        if split_file.is_file():
            try:
                valid = set(json.loads(split_file.read_text())["valid"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{split_file}: expected {{\"valid\": [track names]}}") from exc
        tracks = [t for t in tracks if (t.name in valid) == (split == "valid")]
    if not tracks:
        raise DatasetError(f"{root}: the {split} split has no tracks")
    rates = {t.rate for t in tracks}
    if len(rates) != 1:
        raise DatasetError(f"{root}: tracks have different sample rates {sorted(rates)}")
    return tracks
