"""Training data sets in the layouts cumx reads, checked before any work, and their validation split.

Layouts under ``ROOT`` (``DataConfig.layout``; ``auto`` picks one from what ``ROOT/train``
holds):

* ``tracks``: ``ROOT/train/<track>/<stem>.<ext>``, one audio file per stem in any format the
  decoder reads (``audio.formats.DATASET_SUFFIXES``), and optionally ``mixture.<ext>``. Without
  a mixture file the mixture is the sum of every stem file of the folder (all of them, not only
  those trained on: what a real mixture would hold). A stem a track lacks is an error naming it, or
  silence with ``DataConfig.silence_missing``. MUSDB18-HQ is this layout.
* MUSDB18's ``ROOT/train/<track>.stem.mp4`` (five AAC streams, :mod:`.musdb`), chosen whenever
  ``ROOT/train`` holds such files (``tracks`` and ``auto`` alike).
* ``sources``: ``ROOT/train/<source>/*.<ext>``, unaligned files per source of any lengths, mixed
  at random as openunmix's ``sourcefolder`` dataset does. ``auto`` picks it when every source is
  a folder of ``ROOT/train``. Derived sources (``a=b+c``) need aligned stems, so not here.

Validation, in this order (the first line of a run says which was taken):

1. ``ROOT/valid/``, when it exists, in the same layout;
2. ``ROOT/split.json`` (``{"valid": [track names]}``): an explicit list wins over the defaults
   below (choice: the issue lists musdb's names first; a file the user wrote is the stronger
   statement, and cumx's synthetic data relies on it);
3. musdb's 14 validation tracks, when ``train/`` holds any of them (MUSDB18 and MUSDB18-HQ);
4. else ``DataConfig.valid_share`` of the tracks (of each source's files in ``sources``), evenly
   spaced in name order, so the split does not depend on the seed.

Checks, each one line before any work: an empty folder, a source folder without audio files, a
track without a stem (or with two files for one), files at different sample rates (refused with
the ffmpeg command that fixes them: resampling every excerpt would cost more than the training
step on CPU), and files of more than two channels. Mono files are read into both channels of a
stereo model (said in :attr:`TrainingData.notes`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cumx_cli.engine.audio.formats import DATASET_SUFFIXES
from cumx_cli.engine.audio.io import AudioInfo, count_audio_streams, probe
from cumx_cli.engine.config import DataConfig
from cumx_cli.engine.data.musdb import (
    MUSDB_VALID,
    STEM_STREAMS,
    is_stem_file,
    stem_track,
    subset_folder,
)
from cumx_cli.engine.data.sources import SourceList
from cumx_cli.engine.data.track import MIXTURE, StemFile, Track
from cumx_cli.engine.errors import AudioIOError, DatasetError

_SUFFIX_HINT = "(.wav, .flac, .mp3, ...)"


@dataclass
class TrainingData:
    """A checked training data set.

    ``train`` are the tracks with a mixture that the input statistics read (in ``sources``, one
    mix per file index of the files of each source); ``pools`` the tracks each source's
    excerpts are drawn from (in ``tracks`` layouts, ``train`` for every source); ``valid`` the
    validation tracks. ``validation`` says where those came from, ``notes`` what was done to
    the files (mono read as stereo), both for the first lines of a run.
    """

    layout: str
    rate: int
    train: list[Track]
    pools: dict[str, list[Track]]
    valid: list[Track]
    validation: str
    notes: list[str] = field(default_factory=list)


def _is_audio(path: Path) -> bool:
    return (path.suffix.lower() in DATASET_SUFFIXES and not path.name.startswith(".")
            and not is_stem_file(path) and path.is_file())


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_audio(p))


def detect_layout(train: Path, layout: str, sources: SourceList) -> str:
    """``stems`` (MUSDB18 ``.stem.mp4``), ``tracks`` or ``sources`` for ``ROOT/train``.

    Raises:
        DatasetError: ``sources`` asked for a folder of ``.stem.mp4`` files, or derived sources
            in the ``sources`` layout.
    """
    if any(is_stem_file(p) and p.is_file() for p in train.iterdir()):
        if layout == "sources":
            raise DatasetError(f"{train} holds MUSDB18 .stem.mp4 files, not a folder per "
                               "source: use the tracks (or auto) layout")
        return "stems"
    if layout == "auto":
        layout = "sources" if all((train / s).is_dir() for s in sources.names) else "tracks"
    if layout == "sources" and sources.derived:
        name, parts = sources.derived[0]
        raise DatasetError(f"{name}={'+'.join(parts)}: a source made of several stems needs "
                           "aligned stems, a folder per track (the tracks layout), not a folder "
                           "per source")
    return layout


def load_training_data(root: Path, sources: SourceList, config: DataConfig,
                       num_channels: int = 2) -> TrainingData:
    """The training and validation data of ``root``, checked (module docstring).

    Raises:
        DatasetError: one line naming the folder or file at fault.
    """
    root = Path(root).expanduser()
    train_dir = subset_folder(root, "train")
    layout = detect_layout(train_dir, config.layout, sources)
    valid_dir = root / "valid"
    if layout == "sources":
        data = _sources_data(root, train_dir, valid_dir, sources, config, num_channels)
    else:
        data = _tracks_data(root, train_dir, valid_dir, layout, sources, config, num_channels)
    data.notes.extend(_check_files(root, [*data.train, *data.valid,
                                          *(t for pool in data.pools.values() for t in pool)],
                                   num_channels))
    data.rate = data.train[0].rate
    return data


def load_split(root: Path, split: str, sources: Sequence[str], num_channels: int = 2
               ) -> list[Track]:
    """The tracks of one split (``train``, ``valid`` or ``test``) of a ``tracks`` layout root
    (or MUSDB18's), checked as :func:`load_training_data` checks them.

    Raises:
        DatasetError: as :func:`load_training_data`.
    """
    root = Path(root).expanduser()
    names = SourceList(tuple(sources))
    config = DataConfig(layout="tracks")
    if split != "test":
        data = load_training_data(root, names, config, num_channels)
        return data.train if split == "train" else data.valid
    folder = subset_folder(root, "test")
    layout = detect_layout(folder, "tracks", names)
    load = _stem_file_track if layout == "stems" else _folder_track
    tracks = [load(path, name, names, config, num_channels)
              for name, path in _track_entries(folder, layout)]
    _check_files(root, tracks, num_channels)
    return tracks


# --- tracks and .stem.mp4 ---------------------------------------------------------------------


def _track_entries(folder: Path, layout: str) -> list[tuple[str, Path]]:
    """``(name, path)`` of each track of ``folder``: its track folders, or its ``.stem.mp4``."""
    if layout == "stems":
        entries = [(stem_track(p, folder.name).name, p) for p in sorted(folder.iterdir())
                   if is_stem_file(p) and p.is_file()]
    else:
        entries = [(p.name, p) for p in sorted(folder.iterdir())
                   if p.is_dir() and not p.name.startswith(".")]
    if not entries:
        what = ".stem.mp4 files" if layout == "stems" else "track folders"
        raise DatasetError(f"{folder}: no {what} found (the tracks layout holds "
                           f"{folder}/<track>/<source>.wav)")
    return entries


def _tracks_data(root: Path, train_dir: Path, valid_dir: Path, layout: str, sources: SourceList,
                 config: DataConfig, num_channels: int) -> TrainingData:
    load = (_stem_file_track if layout == "stems" else _folder_track)
    tracks = [load(path, name, sources, config, num_channels)
              for name, path in _track_entries(train_dir, layout)]
    if valid_dir.is_dir():
        if layout == "stems" and not any(is_stem_file(p) for p in valid_dir.iterdir()):
            raise DatasetError(f"{valid_dir}: no .stem.mp4 files; the validation folder holds "
                               f"the same layout as {train_dir}")
        valid = [load(path, name, sources, config, num_channels)
                 for name, path in _track_entries(valid_dir, layout)]
        train, how = tracks, f"validation: the {len(valid)} tracks of {valid_dir}"
    else:
        train, valid, how = _split_tracks(root, tracks, config.valid_share)
    name = "MUSDB18 .stem.mp4" if layout == "stems" else "tracks"
    return TrainingData(name, 0, train, dict.fromkeys(sources.names, train), valid, how)


def _split_tracks(root: Path, tracks: list[Track], share: float
                  ) -> tuple[list[Track], list[Track], str]:
    """Training and validation tracks of one folder, and which rule chose them."""
    names = [t.name for t in tracks]
    split_file = root / "split.json"
    if split_file.is_file():
        chosen = _split_names(split_file)
        how = f"validation: the tracks named in {split_file}"
        if not chosen & set(names):
            raise DatasetError(f"{root}: the valid split has no tracks (none of the names in "
                               f"{split_file} is a track of train/)")
    elif set(MUSDB_VALID) & set(names):
        chosen, how = set(MUSDB_VALID), "validation: musdb's validation tracks"
    else:
        picked = _share(names, share, f"{root / 'train'}", "track")
        chosen = set(picked)
        how = (f"validation: {len(picked)} of {len(names)} tracks ({share:.0%}, evenly spaced "
               f"by name; name them in {split_file} or a valid/ folder to choose)")
    train = [t for t in tracks if t.name not in chosen]
    valid = [t for t in tracks if t.name in chosen]
    if not train:
        raise DatasetError(f"{root}: the train split has no tracks ({split_file} puts every "
                           "track in 'valid': leave some out of it)")
    return train, valid, how


def _split_names(split_file: Path) -> set[str]:
    try:
        names = json.loads(split_file.read_text())["valid"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError
        return set(names)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{split_file}: expected {{\"valid\": [track names]}}") from exc


def _share(names: Sequence[str], share: float, where: str, what: str) -> list[str]:
    """``share`` of ``names`` (at least one, leaving at least one), evenly spaced."""
    if len(names) < 2:
        raise DatasetError(f"{where}: only {len(names)} {what}, and holding one out for "
                           f"validation needs two: add a valid/ folder beside train/, or more "
                           f"{what}s")
    count = min(len(names) - 1, max(1, round(share * len(names))))
    return [names[int((i + 0.5) * len(names) / count)] for i in range(count)]


def _stem_index(folder: Path) -> dict[str, Path]:
    """The audio files of a track folder by stem name (``vocals`` for ``vocals.flac``)."""
    files: dict[str, Path] = {}
    for path in _audio_files(folder):
        stem = path.name[: -len(path.suffix)]
        if stem in files:
            raise DatasetError(f"{folder}: two files for {stem!r} ({files[stem].name}, "
                               f"{path.name}); keep one")
        files[stem] = path
    return files


def _folder_track(folder: Path, name: str, sources: SourceList, config: DataConfig,
                  num_channels: int) -> Track:
    files = _stem_index(folder)
    if not files:
        raise DatasetError(f"{folder}: no audio files {_SUFFIX_HINT}; a track folder holds "
                           "one audio file per source")
    missing = [s for s in sources.stems if s not in files]
    if missing and (not config.silence_missing or len(missing) == len(sources.stems)):
        raise DatasetError(f"{folder}: missing {missing[0]}.wav (no {missing[0]} stem in any "
                           "audio format); each track folder needs one audio file per source"
                           + ("" if config.silence_missing else
                              " (--silence-missing reads missing stems as silence)"))
    parts = {s: tuple(StemFile(files[p]) for p in sources.recipe(s) if p in files)
             for s in sources.names}
    if MIXTURE in files:
        parts[MIXTURE] = (StemFile(files[MIXTURE]),)
    else:
        parts[MIXTURE] = tuple(StemFile(p) for p in files.values())
    return Track(name, 0, 0, parts, num_channels)


def _stem_file_track(path: Path, name: str, sources: SourceList, config: DataConfig,
                     num_channels: int) -> Track:
    """A ``.stem.mp4`` track: mixture in stream 0, the stems in musdb's order."""
    unknown = [s for s in sources.stems if s not in STEM_STREAMS[1:]]
    if unknown:
        raise DatasetError(f"{path}: a MUSDB18 .stem.mp4 holds {', '.join(STEM_STREAMS[1:])}, "
                           f"not {', '.join(unknown)}; train on those, or on track folders")
    try:
        count = count_audio_streams(path)
    except AudioIOError as exc:
        raise DatasetError(str(exc)) from exc
    if count < len(STEM_STREAMS):
        raise DatasetError(f"{path}: has {count} audio stream{'s' * (count != 1)}; a MUSDB18 "
                           f".stem.mp4 holds {len(STEM_STREAMS)} ({', '.join(STEM_STREAMS)})")
    parts = {s: tuple(StemFile(path, STEM_STREAMS.index(p), rounded=True)
                      for p in sources.recipe(s)) for s in sources.names}
    parts[MIXTURE] = (StemFile(path, 0, rounded=True),)
    return Track(name, 0, 0, parts, num_channels)


# --- sources ----------------------------------------------------------------------------------


def _source_files(folder: Path, sources: SourceList) -> dict[str, list[Path]]:
    files = {}
    for source in sources.names:
        where = folder / source
        if not where.is_dir():
            raise DatasetError(f"{folder}: no {source}/ folder; the sources layout holds "
                               f"{folder}/<source>/<file>.wav for each source")
        found = _audio_files(where)
        if not found:
            raise DatasetError(f"{where}: no audio files {_SUFFIX_HINT}")
        files[source] = found
    return files


def _sources_data(root: Path, train_dir: Path, valid_dir: Path, sources: SourceList,
                  config: DataConfig, num_channels: int) -> TrainingData:
    files = _source_files(train_dir, sources)
    if valid_dir.is_dir():
        valid_files = _source_files(valid_dir, sources)
        how = f"validation: the files of {valid_dir}"
    else:
        valid_files = {}
        for source, found in files.items():
            picked = set(_share([p.name for p in found], config.valid_share,
                                f"{train_dir / source}", "file"))
            valid_files[source] = [p for p in found if p.name in picked]
            files[source] = [p for p in found if p.name not in picked]
        how = (f"validation: {config.valid_share:.0%} of each source's files (evenly spaced by "
               f"name; put them in {valid_dir} to choose)")
    pools = {s: [Track(f"{s}/{p.name}", 0, 0, {s: (StemFile(p),)}, num_channels) for p in found]
             for s, found in files.items()}
    return TrainingData("sources", 0, _mixes(files, "train", num_channels), pools,
                        _mixes(valid_files, "valid", num_channels), how)


def _mixes(files: dict[str, list[Path]], prefix: str, num_channels: int) -> list[Track]:
    """Aligned mixes of unaligned files: mix ``i`` takes file ``i`` (cycling) of each source,
    from its start; its length (set by :func:`_check_files`) is the shortest file's."""
    count = max(len(found) for found in files.values())
    mixes = []
    for i in range(count):
        parts: dict[str, tuple[StemFile, ...]] = {
            s: (StemFile(found[i % len(found)]),) for s, found in files.items()}
        parts[MIXTURE] = tuple(p for stems in parts.values() for p in stems)
        mixes.append(Track(f"{prefix}-mix-{i:03d}", 0, 0, parts, num_channels))
    return mixes


# --- checks -----------------------------------------------------------------------------------


def _probe_all(tracks: Iterable[Track]) -> dict[StemFile, AudioInfo]:
    infos: dict[StemFile, AudioInfo] = {}
    for track in tracks:
        for part in (p for parts in track.parts.values() for p in parts):
            if part not in infos and not (part.rounded and part.stream):
                try:
                    infos[part] = probe(part.path, stream=part.stream)
                except AudioIOError as exc:
                    raise DatasetError(str(exc)) from exc
    return infos


def _check_files(root: Path, tracks: list[Track], num_channels: int) -> list[str]:
    """Probe every file once; set each track's rate and length; refuse mixed rates and
    unusable channel counts. Returns the notes for the run's first lines."""
    infos = _probe_all(_unique(tracks))
    rates = Counter(info.sample_rate for info in infos.values())
    rate = rates.most_common(1)[0][0]
    for part, info in infos.items():
        if info.sample_rate != rate:
            raise DatasetError(
                f"{part.describe()} is at {info.sample_rate} Hz and the rest of {root} at "
                f"{rate} Hz ({rates[rate]} of {len(infos)} files): resample it, e.g. ffmpeg "
                f"-i '{part.path}' -ar {rate} '{part.path.with_stem(part.path.stem + '-' + str(rate))}'")
        if info.channels not in (1, num_channels):
            raise DatasetError(f"{part.describe()} has {info.channels} channels and the model "
                               f"{num_channels}: convert it, e.g. ffmpeg -i '{part.path}' -ac "
                               f"{num_channels} OUT")
    for track in _unique(tracks):
        track.rate = rate
        track.frames = _length(track, infos)
    mono = sum(info.channels == 1 for info in infos.values())
    if mono and num_channels > 1:
        return [f"{mono} of {len(infos)} files are mono: read into all {num_channels} channels"]
    return []


def _unique(tracks: Iterable[Track]) -> list[Track]:
    seen: dict[int, Track] = {}
    for track in tracks:
        seen.setdefault(id(track), track)
    return list(seen.values())


def _length(track: Track, infos: dict[StemFile, AudioInfo]) -> int:
    """A track's frames: its mixture file's; for a mix of several files, the shortest one's.

    A ``.stem.mp4``'s streams are equally long in MUSDB18, so only the mixture is decoded
    (``probe`` of an AAC stream decodes it, about 0.1 s of CPU per minute)."""
    mixture = track.parts.get(MIXTURE)
    if mixture is None:  # a file of a source folder
        (part,) = next(iter(track.parts.values()))
        return infos[part].frames
    frames = [infos[p].frames for p in mixture if p in infos]
    return frames[0] if len(mixture) == 1 else min(frames)
