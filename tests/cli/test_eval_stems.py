"""``eval`` and ``train`` on MUSDB18 itself (``.stem.mp4``), and ``--musdb`` from ``MUSDB_PATH``.

The ``.stem.mp4`` files are encoded here with PyAV (``tests/engine/test_stem_mp4.py``), beside
the MUSDB18 excerpt that stempeg ships. The scores are checked against museval run on musdb's
own decoding, where musdb and the ffmpeg program it runs are there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cumx_cli.commands.train import _data_root
from cumx_cli.engine.data.musdb import MUSDB_TARGETS, find_tracks
from cumx_cli.engine.errors import ConfigError
from tests.cli.helpers import TINY, cumx, error_lines, show
from tests.engine.test_stem_mp4 import RATE, example_stem, needs_musdb, write_stem_root
from tests.synthetic_musdb import estimates as good_estimates

METRICS = ("SDR", "SIR", "ISR", "SAR")


@pytest.fixture(autouse=True)
def _here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSDB_PATH", raising=False)


def medians(score_file: Path) -> dict[str, dict[str, float]]:
    """target -> metric -> median over frames, of a museval-format score file (museval's
    ``TrackStore.json`` reads the same)."""
    data = json.loads(Path(score_file).read_text())
    return {t["name"]: {m: float(np.nanmedian([f["metrics"][m] for f in t["frames"]]))
                        for m in METRICS} for t in data["targets"]}


def separate(root: Path, model: str, out: str) -> None:
    """``cumx separate ROOT/test -o OUT``: float stems, so that they equal ``eval --model``'s."""
    result = cumx("separate", root / "test", "-o", out, "-m", model, "--dtype", "float32",
                  "--clip", "none", "-q")
    assert result.exit_code == 0, show(result)


def test_no_data_set_is_a_one_line_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("est").mkdir()
    result = cumx("eval", "--estimates", "est")
    assert result.exit_code == 2, show(result)
    assert error_lines(result) == ["error: no data set: give --musdb ROOT or set MUSDB_PATH"]
    result = cumx("train", "--epochs", "1")
    assert result.exit_code == 2 and "no data set" in result.stderr, show(result)
    assert "set MUSDB_PATH" in result.stderr
    monkeypatch.setenv("MUSDB_PATH", "nowhere")  # checked as --musdb is
    result = cumx("eval", "--estimates", "est")
    assert result.exit_code == 2, show(result)
    assert "(env var: 'MUSDB_PATH')" in result.stderr and "'nowhere' does not" in result.stderr


def test_musdb_path_yields_to_synthetic_data_but_a_given_musdb_does_not(tmp_path: Path) -> None:
    (tmp_path / "synth" / "train").mkdir(parents=True)
    root = _data_root(Path("from-env"), tmp_path / "synth", None,  # type: ignore[arg-type]
                      musdb_from_env=True)
    assert root == tmp_path / "synth"
    with pytest.raises(ConfigError, match="not both"):
        _data_root(Path("given"), tmp_path / "synth", None)  # type: ignore[arg-type]


@pytest.mark.slow
def test_separate_then_eval_a_stem_root_from_musdb_path(
        tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``separate ROOT/test`` writes OUT/<track>/<source>.wav from each mixture stream; ``eval``
    scores them, and ``eval --model`` scores the same stems."""
    root = tmp_path / "musdb"
    write_stem_root(root, {"A - One": 1.5, "B - Two": 1.0})
    separate(root, model, "est")
    assert sorted(p.name for p in Path("est").iterdir()) == ["A - One", "B - Two"]
    monkeypatch.setenv("MUSDB_PATH", str(root))
    result = cumx("eval", "--subset", "test", "--estimates", "est", "--out", "scores")
    assert result.exit_code == 0, show(result)
    assert "on 2 test track(s)" in result.stderr
    by_model = cumx("eval", "--model", model, "--out", "scores-m")
    assert by_model.exit_code == 0, show(by_model)
    for track in ("A - One", "B - Two"):
        stems, separated = (medians(Path(out) / "test" / f"{track}.json")
                            for out in ("scores", "scores-m"))
        assert list(stems) == list(MUSDB_TARGETS)
        for target, scores in stems.items():
            for metric, value in scores.items():
                assert abs(value - separated[target][metric]) < 0.01, (track, target, metric)


@pytest.mark.slow
def test_scores_equal_museval_on_musdbs_own_decoding(tmp_path: Path, model: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The MUSDB18 excerpt separated by a (random) model, and an encoded track with good
    estimates of its decoded stems (high SDR, so that the references' last bits would show):
    every median of every track, source and metric is museval's on ``musdb.DB(is_wav=False)``,
    to 0.01 dB."""
    musdb = needs_musdb()
    museval = pytest.importorskip("museval")
    root = tmp_path / "musdb"
    (root / "test").mkdir(parents=True)
    shutil.copy(example_stem(), root / "test")
    write_stem_root(root, {"Synth - Noise": 3.0})
    separate(root, model, "est")
    (synth,) = find_tracks(root, "test", ["Synth - Noise"])
    refs = np.stack([synth.read(s).numpy() for s in MUSDB_TARGETS]).astype(np.float64)
    for source, estimate in zip(MUSDB_TARGETS, good_estimates(refs), strict=True):
        sf.write(f"est/Synth - Noise/{source}.wav", estimate.T, RATE, subtype="FLOAT")
    monkeypatch.setenv("MUSDB_PATH", str(root))
    result = cumx("eval", "--subset", "test", "--estimates", "est", "--out", "scores")
    assert result.exit_code == 0, show(result)

    db = musdb.DB(root=str(root), subsets="test", is_wav=False)  # type: ignore[attr-defined]
    assert [t.name for t in db.tracks] == ["Synth - Noise", "The Easton Ellises - Falcon 69"]
    for track in db.tracks:
        user = {s: sf.read(f"est/{track.name}/{s}.wav", dtype="float64")[0]
                for s in MUSDB_TARGETS}
        museval.eval_mus_track(track, user, output_dir=str(tmp_path / "museval"))
        theirs = medians(tmp_path / "museval" / "test" / f"{track.name}.json")
        ours = medians(Path("scores") / "test" / f"{track.name}.json")
        assert list(ours) == list(theirs) == list(MUSDB_TARGETS)
        for target, scores in theirs.items():
            for metric, value in scores.items():
                assert abs(ours[target][metric] - value) < 0.01, (track.name, target, metric)
    assert medians(Path("scores") / "test" / "Synth - Noise.json")["vocals"]["SDR"] > 10


@pytest.mark.slow
def test_train_two_epochs_on_stem_files_and_resume_without_musdb_path_getting_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "musdb"
    write_stem_root(root, {"T1": 2.0, "T2": 2.0, "V1": 2.0}, subset="train")
    (root / "split.json").write_text('{"valid": ["V1"]}')
    monkeypatch.setenv("MUSDB_PATH", str(root))
    result = cumx("train", "--out", "run", "--epochs", "2", *TINY)
    assert result.exit_code == 0, show(result)
    assert (tmp_path / "run" / "best.pt").is_file()
    assert json.loads(Path("run/config.json").read_text())["data_root"] == str(root.resolve())
    # MUSDB_PATH set to other data: a default, so the run resumes on the data it recorded ...
    (tmp_path / "other" / "train").mkdir(parents=True)
    monkeypatch.setenv("MUSDB_PATH", str(tmp_path / "other"))
    resumed = cumx("train", "--resume", "run", "--epochs", "3")
    assert resumed.exit_code == 0, show(resumed)
    epochs = [json.loads(x)["epoch"] for x in Path("run/metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    # ... while the same folder given as --musdb is refused
    refused = cumx("train", "--resume", "run", "--musdb", tmp_path / "other", "--epochs", "4")
    assert refused.exit_code == 2 and "is not the data run" in refused.stderr, show(refused)
