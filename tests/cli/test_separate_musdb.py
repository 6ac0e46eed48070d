"""``cumx separate`` on a MUSDB18-HQ-layout folder (a root, a subset or one track): only the
mixtures are separated, into ``OUT/<track>/<source>.wav``, the layout ``cumx eval --estimates``
reads; the reference stems are never inputs. The recognition itself is tested in
``tests/engine/test_inputs.py``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from cumx_cli.engine.data.synth import generate_synthetic_musdb
from tests.cli.helpers import SOURCES, cumx, error_lines, files_under, json_lines, show
from tests.conftest import RATE, music

TEST_TRACKS = ("synth-test-000", "synth-test-001")
TRAIN_TRACKS = ("synth-train-000",)


@pytest.fixture(autouse=True)
def _cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MUSDB18-HQ root of 2 s tracks: one in train/, two in test/. Tests only read it."""
    return generate_synthetic_musdb(tmp_path_factory.mktemp("data") / "musdb", num_train=1,
                                    num_valid=0, num_test=2, seconds=2.0)


@pytest.fixture
def root(dataset: Path, tmp_path: Path) -> Iterator[Path]:
    """The data set as ``musdb`` in the test's folder, checked to be unchanged afterwards."""
    before = files_under(dataset)
    (tmp_path / "musdb").symlink_to(dataset)
    yield Path("musdb")
    assert files_under(dataset) == before, "separate wrote into the data set"


def estimates(tracks: tuple[str, ...]) -> set[str]:
    return {f"{t}/{s}.wav" for t in tracks for s in SOURCES}


def inputs_of(result_lines: list[dict[str, Any]]) -> set[str]:
    return {Path(line["input"]).as_posix() for line in result_lines}


def test_a_subset_folder_separates_only_its_mixtures(model: str, root: Path) -> None:
    result = cumx("separate", root / "test", "-o", "est", "-m", model, "--json")
    assert result.exit_code == 0, show(result)
    lines = json_lines(result)
    assert inputs_of(lines) == {f"musdb/test/{t}/mixture.wav" for t in TEST_TRACKS}
    assert all(line["status"] == "ok" for line in lines)
    assert files_under(Path("est")) == estimates(TEST_TRACKS)


def test_a_root_separates_the_mixtures_of_both_subsets_under_their_names(model: str, root: Path) -> None:
    result = cumx("separate", root, "-o", "est", "-m", model, "--json")
    assert result.exit_code == 0, show(result)
    assert inputs_of(json_lines(result)) == {
        *(f"musdb/test/{t}/mixture.wav" for t in TEST_TRACKS),
        *(f"musdb/train/{t}/mixture.wav" for t in TRAIN_TRACKS)}
    assert files_under(Path("est")) == estimates(TEST_TRACKS + TRAIN_TRACKS)


def test_a_track_folder_separates_its_mixture(model: str, root: Path) -> None:
    result = cumx("separate", root / "test" / TEST_TRACKS[1], "-o", "est", "-m", model, "--json")
    assert result.exit_code == 0, show(result)
    assert inputs_of(json_lines(result)) == {f"musdb/test/{TEST_TRACKS[1]}/mixture.wav"}
    assert files_under(Path("est")) == estimates(TEST_TRACKS[1:])
    # a stem named on the command line is separated as given
    result = cumx("separate", root / "test" / TEST_TRACKS[1] / "bass.wav", "-o", "stem", "-m", model)
    assert result.exit_code == 0, show(result)
    assert files_under(Path("stem")) == estimates(("bass",))


def test_two_tracks_of_one_name_in_a_root_are_refused_by_the_output_check(
        model: str, dataset: Path) -> None:
    shutil.copytree(dataset / "test" / TEST_TRACKS[0], Path("twice/test/song"))
    shutil.copytree(dataset / "train" / TRAIN_TRACKS[0], Path("twice/train/song"))
    result = cumx("separate", "twice", "-o", "est", "-m", model, "--json")
    assert result.exit_code == 1, show(result)
    assert [line["status"] for line in json_lines(result)] == ["ok", "error"]
    assert "is also the output of twice/test/song/mixture.wav" in error_lines(result)[0]
    assert files_under(Path("est")) == estimates(("song",))


def test_an_output_folder_inside_the_data_set_is_a_usage_error(model: str, root: Path) -> None:
    result = cumx("separate", root / "test", "-o", root / "test" / "est", "-m", model)
    assert result.exit_code == 2, show(result)
    assert "lies inside the MUSDB folder" in result.stderr


def test_a_folder_with_a_song_called_mixture_but_no_stems_is_searched_as_usual(model: str) -> None:
    for name in ("mixture.wav", "intro.wav", "live/mixture.wav"):
        (Path("songs") / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(Path("songs") / name, music(0.5, seed=len(name)), RATE)
    result = cumx("separate", "songs", "-o", "out", "-m", model)
    assert result.exit_code == 0, show(result)
    assert files_under(Path("out")) == estimates(("intro", "mixture", "live/mixture"))


def frame_scores(out: Path) -> dict[tuple[str, str, float, str], float]:
    """Every per-frame metric of every track's score file under ``out/test``."""
    scores = {}
    for file in sorted((out / "test").glob("*.json")):
        for target in json.loads(file.read_text())["targets"]:
            for frame in target["frames"]:
                for metric, value in frame["metrics"].items():
                    scores[file.stem, target["name"], frame["time"], metric] = value
    return scores


@pytest.mark.slow
def test_the_readme_recipe_scores_what_eval_model_scores(model: str, root: Path) -> None:
    """``separate ROOT/test -o est`` then ``eval --estimates est``: every track scored, as
    ``eval --model`` with the same inference options scores them (up to 16-bit rounding)."""
    options = ("--niter", "1", "--chunk", "1.5", "--overlap", "0.5")
    result = cumx("separate", root / "test", "-o", "est", "-m", model, *options)
    assert result.exit_code == 0, show(result)
    result = cumx("eval", "--musdb", root, "--estimates", "est", "--out", "from-stems")
    assert result.exit_code == 0, show(result)
    result = cumx("eval", "--musdb", root, "--model", model, "--out", "from-model", *options)
    assert result.exit_code == 0, show(result)
    from_stems, from_model = frame_scores(Path("from-stems")), frame_scores(Path("from-model"))
    assert {key[0] for key in from_stems} == set(TEST_TRACKS)
    assert {key[1] for key in from_stems} == set(SOURCES)
    assert from_stems.keys() == from_model.keys()
    worst = max(abs(from_stems[k] - from_model[k]) for k in from_stems)
    assert worst < 0.01, f"scores differ by up to {worst:.4f} dB"
