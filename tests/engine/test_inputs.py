"""Inputs of ``separate``: folders expanded to their audio files, skipping the run's own output
folder and hidden files, and the round-robin shards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.inference.inputs import InputFile, collect_inputs, shard


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


def test_shards_deal_the_inputs_round_robin() -> None:
    items = [InputFile(Path(f"{i}.wav"), str(i)) for i in range(5)]
    assert tracks(shard(items, "1/2")) == ["0", "2", "4"]
    assert tracks(shard(items, "2/2")) == ["1", "3"]
    for bad in ("0/2", "3/2", "x", "1/2/3"):
        with pytest.raises(ConfigError, match="--shard"):
            shard(items, bad)
