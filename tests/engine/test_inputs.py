"""Inputs of ``separate``: folders expanded to their audio files, skipping the run's own output
folder and hidden files, MUSDB track folders reduced to their mixtures, and the round-robin
shards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.inference.inputs import InputFile, MusdbFolder, collect_inputs, find_inputs, shard


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def tracks(items: list[InputFile]) -> list[str]:
    return [item.track for item in items]


def test_folders_are_searched_recursively_for_audio(tmp_path: Path) -> None:
    touch(tmp_path / "b.flac", tmp_path / "a" / "x.WAV", tmp_path / "a" / "deep" / "y.ogg",
          tmp_path / "notes.txt")
    assert tracks(collect_inputs([tmp_path])) == ["a/deep/y", "a/x", "b"]
    missing = tmp_path / "nowhere.wav"
    assert collect_inputs([missing]) == [InputFile(missing, "nowhere")]  # reported later


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    touch(tmp_path / "song.wav", tmp_path / ".song.wav.4242.raw", tmp_path / ".bass.wav.part",
          tmp_path / ".hidden.wav", tmp_path / ".cache" / "c.wav", tmp_path / "sub" / ".x" / "d.wav")
    assert tracks(collect_inputs([tmp_path])) == ["song"]


def test_the_output_folder_is_skipped_however_it_is_spelled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    touch(Path("song.wav"), Path("separated/song/bass.wav"), Path("separated/x/separated/y.wav"),
          Path("sub/separated/keep.wav"))
    assert tracks(collect_inputs([Path(".")], Path("separated"))) == ["song", "sub/separated/keep"]
    assert tracks(collect_inputs([Path(".")], tmp_path / "sub" / ".." / "separated")) == [
        "song", "sub/separated/keep"]
    os.symlink(tmp_path / "separated", tmp_path / "out")  # -o out, a link to separated/
    assert tracks(collect_inputs([Path(".")], Path("out"))) == ["song", "sub/separated/keep"]
    # without an output folder (the engine's callers may pass none), everything visible
    assert len(collect_inputs([Path(".")])) == 4
    # a folder given as an input is searched even inside the output folder; files are kept
    assert tracks(collect_inputs([Path("separated/song")], Path("separated"))) == ["bass"]
    assert tracks(collect_inputs([Path("separated/song/bass.wav")], Path("separated"))) == ["bass"]


def track_folder(folder: Path, stems: tuple[str, ...] = ("bass", "drums", "other", "vocals")) -> Path:
    touch(folder / "mixture.wav", *(folder / f"{s}.wav" for s in stems))
    return folder


def test_a_subset_folder_gives_only_its_mixtures_named_by_track(tmp_path: Path) -> None:
    test = tmp_path / "musdb" / "test"
    track_folder(test / "B - Two")
    track_folder(test / "A - One", stems=("vocals",))  # one stem is enough to be a track
    touch(test / "A - One" / "accompaniment.wav", test / "A - One" / "extra" / "x.wav",
          test / "notes.txt", test / ".DS_Store")
    found = find_inputs([test], tmp_path / "separated")
    assert found.files == [InputFile(test / "A - One" / "mixture.wav", "A - One"),
                           InputFile(test / "B - Two" / "mixture.wav", "B - Two")]
    assert found.musdb == [MusdbFolder(test, tracks=2)]
    assert found.musdb[0].describe() == (f"{test}: MUSDB layout, separating only the mixtures "
                                         "of 2 tracks")


def test_a_root_gives_both_subsets_mixtures_under_their_track_names(tmp_path: Path) -> None:
    root = tmp_path / "musdb"
    for name in ("train/T1", "train/T2", "test/S1"):
        track_folder(root / name)
    touch(root / "split.json")
    found = find_inputs([root], tmp_path / "out")
    assert tracks(found.files) == ["S1", "T1", "T2"]  # eval's names, for either --subset
    assert all(item.path.name == "mixture.wav" for item in found.files)
    assert found.musdb == [MusdbFolder(root, tracks=3)]


def test_a_track_folder_gives_its_mixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    track = track_folder(tmp_path / "musdb" / "test" / "A - One")
    found = find_inputs([track], tmp_path / "out")
    assert found.files == [InputFile(track / "mixture.wav", "A - One")]
    assert found.musdb == [MusdbFolder(track, tracks=1, is_track=True)]
    assert found.musdb[0].describe() == f"{track}: a MUSDB track folder, separating only its mixture.wav"
    monkeypatch.chdir(track)  # "." has no name: the folder's is used
    assert tracks(collect_inputs([Path(".")], tmp_path / "out")) == ["A - One"]
    # a file named on the command line is separated as given, stem or not
    assert collect_inputs([track / "bass.wav"]) == [InputFile(track / "bass.wav", "bass")]


def test_track_folders_deeper_in_any_folder_give_only_their_mixtures(tmp_path: Path) -> None:
    touch(tmp_path / "album" / "a.wav", tmp_path / "b.flac")
    track_folder(tmp_path / "stems" / "song")
    track_folder(tmp_path / "datasets" / "musdb" / "test" / "S1")
    found = find_inputs([tmp_path], tmp_path / "separated")
    assert tracks(found.files) == ["album/a", "b", "datasets/musdb/test/S1", "stems/song"]
    assert found.musdb == [MusdbFolder(tmp_path, tracks=2, others=2)]
    assert found.musdb[0].describe().endswith("of 2 tracks and 2 other audio files")


@pytest.mark.parametrize("files", [("mixture.wav", "intro.wav"),  # a song called mixture
                                   ("bass.wav", "drums.wav", "other.wav", "vocals.wav"),  # stems
                                   ("mixture.flac", "vocals.wav")])  # MUSDB tracks are wav
def test_a_folder_that_is_not_a_track_is_searched_as_usual(tmp_path: Path, files: tuple[str, ...]) -> None:
    touch(*(tmp_path / "songs" / f for f in files))
    found = find_inputs([tmp_path / "songs"])
    assert tracks(found.files) == sorted(Path(f).stem for f in files)
    assert found.musdb == []


def test_the_output_folder_may_not_lie_inside_the_data_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    track_folder(Path("musdb/test/A"))
    track_folder(Path("musdb/train/B"))
    for inputs, output in [("musdb/test", "musdb/test/est"), ("musdb", "musdb/train/B/out"),
                           ("musdb/test/A", "musdb/test"), ("musdb/test/A", "musdb/test/A"),
                           ("musdb/test/A", "musdb/test/other/est")]:
        with pytest.raises(ConfigError, match=r"-o/--output .* lies inside the MUSDB folder"):
            find_inputs([Path(inputs)], Path(output))
    os.symlink(tmp_path / "musdb" / "test", tmp_path / "link")
    with pytest.raises(ConfigError, match="lies inside"):
        find_inputs([Path("musdb/test")], Path("link/est"))
    # beside the subsets, or anywhere outside: allowed
    assert tracks(find_inputs([Path("musdb")], Path("musdb/est")).files) == ["A", "B"]
    assert tracks(find_inputs([Path("musdb/test")], Path("separated")).files) == ["A"]
    # a folder of stems that is not in a train/ or test/ folder: only the track itself is data
    track_folder(Path("mine/song"))
    assert tracks(find_inputs([Path("mine")], Path("mine/separated")).files) == ["song"]
    with pytest.raises(ConfigError, match="lies inside"):
        find_inputs([Path("mine")], Path("mine/song/out"))


def test_shards_deal_the_inputs_round_robin() -> None:
    items = [InputFile(Path(f"{i}.wav"), str(i)) for i in range(5)]
    assert tracks(shard(items, "1/2")) == ["0", "2", "4"]
    assert tracks(shard(items, "2/2")) == ["1", "3"]
    for bad in ("0/2", "3/2", "x", "1/2/3"):
        with pytest.raises(ConfigError, match="--shard"):
            shard(items, bad)


def test_stem_files_are_searched_without_ext_and_named_as_eval_names_them(tmp_path: Path) -> None:
    """A MUSDB18 root of ``.stem.mp4`` files: each is a track (its mixture stream is what
    ``separate`` reads), found without ``--ext mp4``, named without the subset folder."""
    root = tmp_path / "musdb"
    touch(root / "test" / "A - One.stem.mp4", root / "test" / "B - Two.stem.mp4",
          root / "train" / "T1.stem.mp4", root / "test" / "._A - One.stem.mp4",
          root / "test" / "clip.mp4")  # a video: only with --ext mp4
    found = find_inputs([root / "test"], tmp_path / "est")
    assert found.files == [InputFile(root / "test" / "A - One.stem.mp4", "A - One"),
                           InputFile(root / "test" / "B - Two.stem.mp4", "B - Two")]
    assert found.musdb == [MusdbFolder(root / "test", tracks=2)]
    assert tracks(find_inputs([root], tmp_path / "est").files) == ["A - One", "B - Two", "T1"]
    assert tracks(find_inputs([root / "test"], None, [".mp4"]).files) == ["A - One", "B - Two", "clip"]
    # deeper in another folder: named by their path, as track folders are
    assert tracks(find_inputs([tmp_path]).files) == ["musdb/test/A - One", "musdb/test/B - Two",
                                                     "musdb/train/T1"]


def test_the_output_folder_may_not_lie_in_a_subset_folder_of_stem_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    touch(Path("musdb/test/A.stem.mp4"), Path("mine/song.stem.mp4"))
    with pytest.raises(ConfigError, match=r"-o/--output musdb/test/est lies inside the MUSDB "
                                          r"folder .*musdb/test"):
        find_inputs([Path("musdb")], Path("musdb/test/est"))
    assert tracks(find_inputs([Path("musdb")], Path("musdb/est")).files) == ["A"]
    # a stems file that is not in a train/ or test/ folder: its folder is not a data set
    assert tracks(find_inputs([Path("mine")], Path("mine/separated")).files) == ["song"]
