"""MUSDB18(-HQ) track discovery and reading, as training and evaluation share them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.data.musdb import find_tracks, load_tracks
from cumx_cli.engine.errors import DatasetError

FOUR = ("bass", "drums", "vocals", "other")


def test_synthetic_layout_and_split(synthetic_musdb: Path) -> None:
    train = load_tracks(synthetic_musdb, "train", FOUR)
    valid = load_tracks(synthetic_musdb, "valid", FOUR)
    test = load_tracks(synthetic_musdb, "test", FOUR)
    assert [t.name for t in train] == ["synth-train-000", "synth-train-001"]
    assert [t.name for t in valid] == ["synth-train-002"]
    assert len(test) == 1 and train[0].rate == 44100 and train[0].frames == 3 * 44100
    mix = train[0].read("mixture")
    total = sum(train[0].read(s) for s in FOUR)
    assert torch.allclose(mix, total, atol=1e-6)  # the mixture is the sum of the stems
    excerpt = train[0].read("vocals", 1000, 500)
    assert torch.equal(excerpt, train[0].read("vocals")[:, 1000:1500])


def test_training_dataset_errors_name_what_is_wrong(tmp_path: Path, synthetic_musdb: Path) -> None:
    with pytest.raises(DatasetError, match="no 'train' folder"):
        load_tracks(tmp_path, "train", ("bass",))
    broken = tmp_path / "broken"
    for name in ("song", "tune"):
        (broken / "train" / name).mkdir(parents=True)
        sf.write(broken / "train" / name / "mixture.wav", np.zeros((100, 2)), 44100)
    with pytest.raises(DatasetError, match=r"song: missing bass.wav \(no bass stem in any audio format\)"):
        load_tracks(broken, "train", ("bass",))
    with pytest.raises(DatasetError, match="no piano stem"):
        load_tracks(synthetic_musdb, "train", ("bass", "piano"))
    for name in ("song", "tune"):
        sf.write(broken / "train" / name / "bass.wav", np.zeros((100, 2)), 44100)
    # no split.json and no musdb names: a share of the tracks (at least one) validates
    assert [t.name for t in load_tracks(broken, "train", ("bass",))] == ["song"]
    assert [t.name for t in load_tracks(broken, "valid", ("bass",))] == ["tune"]
    (broken / "split.json").write_text('{"valid": ["elsewhere"]}')
    with pytest.raises(DatasetError, match=r"none of the names in .*split\.json is a track"):
        load_tracks(broken, "valid", ("bass",))
    (broken / "split.json").write_text('{"valid": ["song"]}')
    assert [t.name for t in load_tracks(broken, "valid", ("bass",))] == ["song"]
    (broken / "split.json").write_text('{"valid": ["song", "tune"]}')
    with pytest.raises(DatasetError, match=r"train split has no tracks .*leave some out of it"):
        load_tracks(broken, "train", ("bass",))
    (broken / "split.json").write_text("[]")
    with pytest.raises(DatasetError, match=r"split.json: expected \{\"valid\""):
        load_tracks(broken, "valid", ("bass",))


def test_find_tracks_filters_and_names_what_is_missing(
        musdb_hq: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    root, _ = musdb_hq
    (root / "test" / ".hidden").mkdir()
    assert [t.name for t in find_tracks(root, "test")] == ["A - One", "B - Two"]
    (b,) = find_tracks(root, "test", ["B - Two"])
    assert b.subset == "test" and b.stem_path("vocals") == root / "test" / "B - Two" / "vocals.wav"
    with pytest.raises(DatasetError, match="Nope"):
        find_tracks(root, "test", ["Nope"])
    with pytest.raises(DatasetError, match="no 'train' folder"):
        find_tracks(root, "train")
    (root / "train").mkdir()
    with pytest.raises(DatasetError, match="no track folders found"):
        find_tracks(root, "train")
    # MUSDB18: a .stem.mp4 is a track (tests/engine/test_stem_mp4.py reads real ones)
    (root / "train" / "x.stem.mp4").write_bytes(b"")
    (x,) = find_tracks(root, "train")
    assert (x.name, x.stem_file, x.stream("vocals")) == ("x", root / "train" / "x.stem.mp4", 4)
    with pytest.raises(DatasetError, match=r"x\.stem\.mp4: the file is empty"):
        load_tracks(root, "train", ("bass",))


def test_training_and_evaluation_find_the_same_tracks(synthetic_musdb: Path) -> None:
    found = find_tracks(synthetic_musdb, "test")
    loaded = load_tracks(synthetic_musdb, "test", FOUR)
    assert [t.name for t in found] == [t.name for t in loaded]
    assert loaded[0].files["vocals"] == found[0].stem_path("vocals")


def test_the_whole_data_set_is_checked_before_any_work(tmp_path: Path) -> None:
    """The train and valid splits share train/: a broken track is found whichever split is
    asked for (training loads both before its first step)."""
    for name, files in (("song", ("mixture", "bass")), ("held", ("mixture",))):
        (tmp_path / "train" / name).mkdir(parents=True)
        for f in files:
            sf.write(tmp_path / "train" / name / f"{f}.wav", np.zeros((100, 2)), 44100)
    (tmp_path / "split.json").write_text('{"valid": ["held"]}')
    for split in ("train", "valid"):
        with pytest.raises(DatasetError, match=r"held: missing bass.wav"):
            load_tracks(tmp_path, split, ("bass",))  # type: ignore[arg-type]
