"""Training data layouts: any audio format, optional mixture, derived and missing stems, a folder
per source, the validation choice, and the one-line checks made before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import DataConfig
from cumx_cli.engine.data.layouts import load_training_data
from cumx_cli.engine.data.musdb import MUSDB_VALID
from cumx_cli.engine.data.sources import SourceList, parse_sources
from cumx_cli.engine.errors import DatasetError

RATE = 8000


def tone(seconds: float, channels: int = 2, seed: int = 0, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = RATE) -> np.ndarray:
    """Write ``data`` (time, channel) and return what reading it gives back (channel, time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype="PCM_16" if path.suffix == ".wav" else None)
    back, _ = sf.read(path, dtype="float32", always_2d=True)
    return back.T


def track_folder(folder: Path, stems: dict[str, str], seconds: float = 1.0, seed: int = 0,
                 mixture: bool = False) -> dict[str, np.ndarray]:
    """``folder/<stem>.<ext>`` for each stem -> ext; the samples read back, by stem."""
    out = {name: write(folder / f"{name}.{ext}", tone(seconds, seed=seed + i))
           for i, (name, ext) in enumerate(stems.items())}
    if mixture:
        out["mixture"] = write(folder / "mixture.wav", sum(v.T for v in out.values()))
    return out


def load(root: Path, sources: str, **data: object):  # type: ignore[no-untyped-def]
    return load_training_data(root, parse_sources(sources), DataConfig(**data))  # type: ignore[arg-type]


def test_flac_and_mp3_stems_without_a_mixture_and_a_derived_source(tmp_path: Path) -> None:
    stems = {"vocals": "flac", "drums": "mp3", "bass": "wav", "other": "flac"}
    written = {f"t{i}": track_folder(tmp_path / "train" / f"t{i}", stems, seed=10 * i)
               for i in range(3)}
    track_folder(tmp_path / "valid" / "v", stems, seed=99)
    data = load(tmp_path, "vocals,accompaniment=drums+bass")
    assert data.layout == "tracks" and data.rate == RATE
    assert data.validation.startswith("validation: the 1 tracks of") and "valid" in data.validation
    assert [t.name for t in data.train] == ["t0", "t1", "t2"] and len(data.valid) == 1
    track, signals = data.train[1], written["t1"]
    frames = min(s.shape[-1] for s in signals.values())  # the mp3 decodes a little longer
    assert track.frames == frames
    vocals = track.read("vocals", 100, 400)
    assert torch.equal(vocals, torch.from_numpy(signals["vocals"][:, 100:500]))
    accompaniment = track.read("accompaniment", 100, 400).numpy()
    expected = signals["drums"][:, 100:500] + signals["bass"][:, 100:500]
    np.testing.assert_allclose(accompaniment, expected, atol=1e-6)
    # no mixture file: every stem of the folder, "other" too, though it is not trained on
    mixture = track.read("mixture", 0, 800).numpy()
    np.testing.assert_allclose(mixture, sum(s[:, :800] for s in signals.values()), atol=1e-6)
    assert data.pools == {"vocals": data.train, "accompaniment": data.train}


def test_a_missing_stem_is_an_error_or_silence(tmp_path: Path) -> None:
    track_folder(tmp_path / "train" / "full", {"vocals": "wav", "drums": "wav"}, mixture=True)
    track_folder(tmp_path / "train" / "no-drums", {"vocals": "wav"}, mixture=True)
    track_folder(tmp_path / "valid" / "v", {"vocals": "wav", "drums": "wav"})
    with pytest.raises(DatasetError) as caught:
        load(tmp_path, "vocals,drums")
    assert str(caught.value) == (
        f"{tmp_path / 'train' / 'no-drums'}: missing drums.wav (no drums stem in any audio "
        "format); each track folder needs one audio file per source (--silence-missing reads "
        "missing stems as silence)")
    data = load(tmp_path, "vocals,drums", silence_missing=True)
    lacking = data.train[1]
    assert lacking.name == "no-drums"
    assert torch.equal(lacking.read("drums", 0, 300), torch.zeros(2, 300))
    assert lacking.read("mixture").abs().max() > 0  # its mixture file
    track_folder(tmp_path / "train" / "nothing", {"piano": "wav"})
    with pytest.raises(DatasetError, match=r"nothing: missing vocals.wav \(no vocals stem .*per source$"):
        load(tmp_path, "vocals,drums", silence_missing=True)  # silence for every source: no


def test_mono_stems_are_read_as_stereo_and_said(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "t"
    vocals = write(folder / "vocals.wav", tone(1.0, channels=1))
    write(folder / "drums.wav", tone(1.0, seed=3))
    track_folder(tmp_path / "valid" / "v", {"vocals": "wav", "drums": "wav"})
    data = load(tmp_path, "vocals,drums")
    assert data.notes == ["1 of 4 files are mono: read into all 2 channels"]
    read = data.train[0].read("vocals")
    assert read.shape == (2, RATE) and torch.equal(read[0], read[1])
    assert torch.equal(read[0], torch.from_numpy(vocals[0]))
    with pytest.raises(DatasetError, match=r"drums.wav has 2 channels and the model 1: convert "
                                           r"it, e.g. ffmpeg -i '.*drums.wav' -ac 1 OUT"):
        load_training_data(tmp_path, parse_sources("vocals,drums"), DataConfig(), num_channels=1)


def test_a_file_at_another_rate_is_refused_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    for i in range(2):
        track_folder(tmp_path / "train" / f"t{i}", {"vocals": "wav", "drums": "wav"}, seed=i)
    odd = tmp_path / "train" / "t1" / "drums.wav"
    write(odd, tone(1.0, rate=16000), rate=16000)
    track_folder(tmp_path / "valid" / "v", {"vocals": "wav", "drums": "wav"})
    with pytest.raises(DatasetError) as caught:
        load(tmp_path, "vocals,drums")
    assert str(caught.value) == (
        f"{odd} is at 16000 Hz and the rest of {tmp_path} at 8000 Hz (5 of 6 files): resample "
        f"it, e.g. ffmpeg -i '{odd}' -ar 8000 '{odd.with_name('drums-8000.wav')}'")


def test_empty_and_ambiguous_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match=r"train: no track folders found"):
        load(tmp_path, "vocals,drums", layout="tracks")
    (tmp_path / "train" / "t").mkdir()
    (tmp_path / "train" / "t" / "notes.txt").write_text("not audio")
    with pytest.raises(DatasetError, match=r"t: no audio files \(.wav, .flac, .mp3, ...\); a "
                                           r"track folder holds one audio file per source"):
        load(tmp_path, "vocals,drums")
    track_folder(tmp_path / "train" / "t", {"vocals": "wav", "drums": "wav"})
    write(tmp_path / "train" / "t" / "vocals.flac", tone(1.0))
    with pytest.raises(DatasetError, match=r"t: two files for 'vocals' \(vocals.flac, "
                                           r"vocals.wav\); keep one"):
        load(tmp_path, "vocals,drums")


def sources_root(root: Path, counts: dict[str, int], subset: str = "train") -> dict[str, list]:
    out: dict[str, list] = {}
    for j, (source, count) in enumerate(counts.items()):
        out[source] = [write(root / subset / source / f"{k:02d}.flac",
                             tone(0.5 + 0.25 * k, seed=100 * j + k)) for k in range(count)]
    return out


def test_the_sources_layout_mixes_unaligned_files(tmp_path: Path) -> None:
    written = sources_root(tmp_path, {"vocals": 4, "drums": 3})
    data = load(tmp_path, "vocals,drums")  # auto: every source is a folder of train/
    assert data.layout == "sources"
    assert data.validation.startswith("validation: 10% of each source's files")
    # one file of each source held out (10% of 4 and of 3, at least one), evenly spaced
    assert [t.name for t in data.pools["vocals"]] == ["vocals/00.flac", "vocals/01.flac",
                                                       "vocals/03.flac"]
    assert [t.name for t in data.pools["drums"]] == ["drums/00.flac", "drums/02.flac"]
    pool = data.pools["vocals"][2]
    assert pool.frames == written["vocals"][3].shape[-1]
    assert torch.equal(pool.read("vocals"), torch.from_numpy(written["vocals"][3]))
    # the statistics' mixes: file i (cycling) of each source, as long as the shortest
    assert len(data.train) == 3 and len(data.valid) == 1
    mix = data.train[2]
    assert mix.frames == written["drums"][0].shape[-1]  # vocals/03 and drums/00 (the shorter)
    expected = written["vocals"][3][:, :mix.frames] + written["drums"][0]
    np.testing.assert_allclose(mix.read("mixture").numpy(), expected, atol=1e-6)
    sources_root(tmp_path, {"vocals": 1, "drums": 1}, subset="valid")
    assert load(tmp_path, "vocals,drums").validation == (
        f"validation: the files of {tmp_path / 'valid'}")


def test_sources_layout_errors(tmp_path: Path) -> None:
    sources_root(tmp_path, {"vocals": 2, "drums": 1})
    with pytest.raises(DatasetError, match=r"train/drums: only 1 file, and holding one out for "
                                           r"validation needs two: add a valid/ folder"):
        load(tmp_path, "vocals,drums")
    with pytest.raises(DatasetError, match=r"train: no bass/ folder; the sources layout holds"):
        load(tmp_path, "vocals,bass", layout="sources")
    (tmp_path / "train" / "bass").mkdir()
    with pytest.raises(DatasetError, match=r"train/bass: no audio files \(.wav, .flac"):
        load(tmp_path, "vocals,bass")
    with pytest.raises(DatasetError, match=r"^rest=drums\+bass: a source made of several stems "
                                           r"needs aligned stems"):
        load(tmp_path, "vocals,rest=drums+bass", layout="sources")


def test_the_validation_choice_order(tmp_path: Path) -> None:
    names = ["A", "B", "C", "D", MUSDB_VALID[0]]
    for i, name in enumerate(names):
        track_folder(tmp_path / "train" / name, {"vocals": "wav", "drums": "wav"}, seed=i,
                     mixture=True)
    assert [t.name for t in load(tmp_path, "vocals,drums").valid] == [MUSDB_VALID[0]]
    assert load(tmp_path, "vocals,drums").validation == "validation: musdb's validation tracks"
    (tmp_path / "split.json").write_text(json.dumps({"valid": ["B"]}))
    data = load(tmp_path, "vocals,drums")
    assert [t.name for t in data.valid] == ["B"] and "split.json" in data.validation
    (tmp_path / "split.json").unlink()
    (tmp_path / "train" / MUSDB_VALID[0]).rename(tmp_path / "train" / "E")
    data = load(tmp_path, "vocals,drums", valid_share=0.4)
    assert [t.name for t in data.valid] == ["B", "D"]  # the middle ones of 2 equal parts of 5
    assert data.validation.startswith("validation: 2 of 5 tracks (40%, evenly spaced")
    (tmp_path / "split.json").write_text(json.dumps({"valid": names[:4] + ["E"]}))
    with pytest.raises(DatasetError, match=r"the train split has no tracks"):
        load(tmp_path, "vocals,drums")
    (tmp_path / "split.json").write_text('{"valid": "A"}')
    with pytest.raises(DatasetError, match=r"split.json: expected \{\"valid\": \[track names\]\}"):
        load(tmp_path, "vocals,drums")


def test_load_split_reads_the_test_folder(tmp_path: Path) -> None:
    from cumx_cli.engine.data.layouts import load_split

    track_folder(tmp_path / "test" / "x", {"vocals": "flac", "drums": "wav"}, mixture=True)
    (track,) = load_split(tmp_path, "test", ("vocals", "drums"))
    assert track.name == "x" and track.rate == RATE and track.frames == RATE
    assert SourceList(("vocals",)).stems == ("vocals",)
