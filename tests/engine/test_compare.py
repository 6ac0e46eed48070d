"""Comparing runs: score folders found and read, the table and the paired differences against an
independent numpy computation, left-out tracks and sources, reports and the box plot."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.errors import ConfigError, EvaluationError
from cumx_cli.engine.evaluation import compare
from cumx_cli.engine.evaluation.museval_format import METRICS, to_json

SOURCES = ("vocals", "drums", "bass", "other")
TRACKS = ("t0", "t1", "t2", "t3", "t4")
#: Added to SDR for the other metrics, so that each metric has its own numbers.
OFFSETS = {"SDR": 0.0, "SIR": 5.0, "ISR": 3.0, "SAR": 1.0}

#: track -> source -> frame SDRs
Frames = dict[str, dict[str, list[float]]]


def make_frames(quality: float, seed: int, tracks: tuple[str, ...] = TRACKS,
                sources: tuple[str, ...] = SOURCES, num_frames: int = 7) -> Frames:
    """Random frame scores around ``quality`` dB, with a NaN frame (a silent one) in each."""
    rng = np.random.default_rng(seed)
    out: Frames = {}
    for track in tracks:
        out[track] = {}
        for source in sources:
            values = quality + rng.normal(0, 2, num_frames)
            values[rng.integers(num_frames)] = np.nan
            out[track][source] = [round(float(v), 5) for v in values]
    return out


def write_run(folder: Path, frames: Frames, record: bool = True, subset: str = "test") -> Path:
    """``folder/subset/<track>.json`` in museval's format (cumx's writer), as ``cumx eval``
    lays it out, with a ``summary.json`` beside the subset folder as ``cumx eval`` writes."""
    for track, table in frames.items():
        metrics = {s: {m: [v + OFFSETS[m] for v in values] for m in METRICS}
                   for s, values in table.items()}
        path = folder / subset / f"{track}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_json(metrics, EvalConfig(), {"estimates": str(folder)} if record else None))
    (folder / "summary.json").write_text('{"overall": {}}\n')
    return folder


def per_track_medians(frames: Frames, track: str, source: str, metric: str = "SDR") -> float:
    return float(np.nanmedian(np.array(frames[track][source]) + OFFSETS[metric]))


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Frames]:
    """Three runs of different quality: good, mid, poor."""
    frames = {"good": make_frames(8.0, 1), "mid": make_frames(5.0, 2), "poor": make_frames(1.0, 3)}
    for name, table in frames.items():
        write_run(tmp_path / name, table, record=name != "mid")  # mid: another tool's files
    return frames


@pytest.mark.parametrize("metric", METRICS)
def test_table_is_the_median_over_tracks_of_the_medians_over_frames(
        tmp_path: Path, runs: dict[str, Frames], metric: str) -> None:
    comparison = compare.compare_folders([tmp_path / n for n in runs])
    assert comparison.names == ("good", "mid", "poor")
    assert comparison.tracks == TRACKS and comparison.sources == SOURCES
    for summary, frames in zip(comparison.summaries, runs.values(), strict=True):
        medians = {s: float(np.median([per_track_medians(frames, t, s, metric) for t in TRACKS]))
                   for s in SOURCES}
        for source in SOURCES:
            assert summary.overall[source][metric] == pytest.approx(medians[source], abs=1e-12)
        assert summary.overall["avg"][metric] == pytest.approx(np.mean(list(medians.values())),
                                                               abs=1e-12)
    rows = compare.format_table(comparison, metric).splitlines()
    assert rows[0].startswith(f"{metric} (dB): median over frames, then median over 5 track(s)")
    assert rows[1].split() == ["run", *SOURCES, "avg"]
    good = comparison.summaries[0].overall
    assert rows[2].split() == ["good", *(f"{good[c][metric]:.2f}" for c in (*SOURCES, "avg"))]


def test_paired_differences_and_improving_tracks(tmp_path: Path, runs: dict[str, Frames]) -> None:
    comparison = compare.compare_folders([tmp_path / n for n in ("mid", "good", "poor")])
    assert comparison.differences[0] == {}
    reference = runs["mid"]
    for diff, frames in zip(comparison.differences[1:], (runs["good"], runs["poor"]), strict=True):
        for source in SOURCES:
            d = np.array([per_track_medians(frames, t, source) - per_track_medians(reference, t, source)
                          for t in TRACKS])
            got = diff[source]["SDR"]
            assert got.median == pytest.approx(float(np.median(d)), abs=1e-12)
            assert (got.improved, got.paired) == (int((d > 0).sum()), 5)
        avg = np.array([np.mean([per_track_medians(frames, t, s) for s in SOURCES])
                        - np.mean([per_track_medians(reference, t, s) for s in SOURCES])
                        for t in TRACKS])
        assert diff["avg"]["SDR"].median == pytest.approx(float(np.median(avg)), abs=1e-12)
        assert diff["avg"]["SDR"].improved == int((avg > 0).sum())
    assert comparison.differences[1]["avg"]["SDR"].improved == 5  # good beats mid on every track
    assert comparison.differences[2]["avg"]["SDR"].improved == 0
    text = compare.format_table(comparison)
    lines = text.splitlines()
    assert lines[6].startswith("SDR paired with mid: median over tracks of (run - mid), and tracks")
    good_row = next(line for line in lines[7:] if line.startswith("good "))
    cells = good_row.split()[1:]
    vocals = comparison.differences[1]["vocals"]["SDR"]
    assert cells[:2] == [f"{vocals.median:+.2f}", f"{vocals.improved}/5"]
    assert cells[-1] == "5/5"


def test_a_track_without_scores_for_a_source_is_not_paired(tmp_path: Path) -> None:
    a, b = make_frames(5.0, 1), make_frames(6.0, 2)
    b["t2"]["vocals"] = [math.nan] * 7  # every frame silent
    write_run(tmp_path / "a", a)
    write_run(tmp_path / "b", b)
    comparison = compare.compare_folders([tmp_path / "a", tmp_path / "b"])
    vocals = comparison.differences[1]["vocals"]["SDR"]
    assert vocals.paired == 4
    d = [per_track_medians(b, t, "vocals") - per_track_medians(a, t, "vocals") for t in TRACKS
         if t != "t2"]
    assert vocals.median == pytest.approx(float(np.median(d)), abs=1e-12)
    assert comparison.differences[1]["avg"]["SDR"].paired == 4
    assert comparison.differences[1]["drums"]["SDR"].paired == 5


def test_only_tracks_and_sources_of_every_run_are_compared(tmp_path: Path) -> None:
    write_run(tmp_path / "a", make_frames(5.0, 1, tracks=("t0", "t1", "t2", "t3")))
    write_run(tmp_path / "b", make_frames(5.0, 2, tracks=("t1", "t2", "t3", "t4")))
    write_run(tmp_path / "c", make_frames(5.0, 3, tracks=("t1", "t2", "t3"),
                                          sources=("vocals", "drums", "bass")))
    comparison = compare.compare_folders([tmp_path / n for n in "abc"])
    assert comparison.tracks == ("t1", "t2", "t3")
    assert comparison.sources == ("vocals", "drums", "bass")
    assert comparison.left_out_tracks == {"t0": ("b", "c"), "t4": ("a", "c")}
    assert comparison.left_out_sources == {"other": ("c",)}
    assert compare.left_out_notes(comparison) == [
        "2 track(s) left out, not scored in every run: t0 (not in b, c), t4 (not in a, c)",
        "1 source(s) left out, not scored in every run: other (not in c)"]
    assert all(set(s.per_track) == {"t1", "t2", "t3"} for s in comparison.summaries)
    assert compare.format_table(comparison).splitlines()[1].split() == [
        "run", "vocals", "drums", "bass", "avg"]


def test_many_left_out_tracks_are_named_up_to_a_limit(tmp_path: Path) -> None:
    many = tuple(f"x{i}" for i in range(8))
    write_run(tmp_path / "a", make_frames(5.0, 1, tracks=("t0", *many)))
    write_run(tmp_path / "b", make_frames(5.0, 2, tracks=("t0",)))
    note = compare.left_out_notes(compare.compare_folders([tmp_path / "a", tmp_path / "b"]))[0]
    assert note.startswith("8 track(s) left out") and note.endswith("and 3 more")


def test_museval_files_of_another_tool_are_read(tmp_path: Path) -> None:
    """museval's own layout and key order, no cumx_record, NaN as JSON NaN, extra keys."""
    for run, value in (("theirs", 3.0), ("ours", 4.0)):
        for track in ("Al James - Schoolboy Facination", "Zeno - Signs"):
            data = {"targets": [{"name": source, "frames": [
                {"time": float(i), "duration": 1.0,
                 "metrics": {"SDR": value + i if i else math.nan, "SIR": 1.0, "SAR": 2.0,
                             "ISR": 3.0}} for i in range(3)]} for source in ("vocals", "accompaniment")],
                "museval_version": "0.4.0", "method": run}
            path = tmp_path / run / "test" / f"{track}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data))
    comparison = compare.compare_folders([tmp_path / "theirs", tmp_path / "ours"])
    assert comparison.sources == ("vocals", "accompaniment")
    assert comparison.summaries[0].overall["vocals"]["SDR"] == 4.5  # median of 4, 5 (NaN left out)
    assert comparison.differences[1]["vocals"]["SDR"] == compare.Difference(1.0, 2, 2)


def test_score_folder_of_an_eval_out_a_subset_folder_or_a_named_subset(tmp_path: Path) -> None:
    frames = make_frames(5.0, 1)
    write_run(tmp_path / "ev", frames)
    assert compare.score_folder(tmp_path / "ev") == tmp_path / "ev" / "test"  # not summary.json
    assert compare.score_folder(tmp_path / "ev" / "test") == tmp_path / "ev" / "test"
    assert compare.score_folder(tmp_path / "ev", "test") == tmp_path / "ev" / "test"
    assert compare.score_folder(tmp_path / "ev" / "test", "test") == tmp_path / "ev" / "test"
    write_run(tmp_path / "tr", frames, subset="train")
    assert compare.score_folder(tmp_path / "tr") == tmp_path / "tr" / "train"
    write_run(tmp_path / "ev", frames, subset="train")
    assert compare.score_folder(tmp_path / "ev") == tmp_path / "ev" / "test"  # test/ first
    assert compare.score_folder(tmp_path / "ev", "train") == tmp_path / "ev" / "train"
    with pytest.raises(EvaluationError, match=r"no score files \(<track>\.json\) in .*valid$"):
        compare.score_folder(tmp_path / "ev", "valid")
    write_run(tmp_path / "two", frames, subset="train")
    write_run(tmp_path / "two", frames, subset="extra")
    with pytest.raises(EvaluationError, match=r"score files in extra, train; choose one with --subset"):
        compare.score_folder(tmp_path / "two")


def test_default_names_are_the_folders_or_the_paths_when_they_collide(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_run(tmp_path / run / "eval", make_frames(5.0, 1))
    folders = [tmp_path / "a" / "eval", tmp_path / "b" / "eval" / "test"]
    found = [compare.score_folder(f) for f in folders]
    assert compare.default_names([tmp_path / "a" / "eval", tmp_path / "b"],
                                 found) == ["eval", "b"]
    assert compare.default_names(folders, found) == [str(f) for f in folders]
    assert compare.compare_folders(folders, ["a", "b"]).names == ("a", "b")


@pytest.mark.parametrize(("names", "message"), [
    (None, r"^comparing needs two or more score folders, got 1$"),
    (["a", "b"], r"^comparing needs two or more score folders, got 1$"),
])
def test_fewer_than_two_runs_is_a_usage_error(tmp_path: Path, names: list[str] | None,
                                              message: str) -> None:
    write_run(tmp_path / "a", make_frames(5.0, 1))
    with pytest.raises(ConfigError, match=message):
        compare.compare_folders([tmp_path / "a"], names)


@pytest.mark.parametrize(("names", "message"), [
    (["a"], r"^names: 1 name\(s\) for 2 score folder\(s\)$"),
    (["a", ""], r"^names: a name is empty$"),
    (["a", "a"], r"^names: a given twice"),
])
def test_names_must_fit_the_folders(tmp_path: Path, names: list[str], message: str) -> None:
    for run in ("x", "y"):
        write_run(tmp_path / run, make_frames(5.0, 1))
    with pytest.raises(ConfigError, match=message) as info:
        compare.compare_folders([tmp_path / "x", tmp_path / "y"], names)
    assert info.value.field == "names"


def test_a_malformed_score_file_is_named(tmp_path: Path) -> None:
    write_run(tmp_path / "a", make_frames(5.0, 1))
    write_run(tmp_path / "b", make_frames(5.0, 1))
    bad = tmp_path / "b" / "test" / "t3.json"
    bad.write_text('{"targets": [{"name": "vocals"}]}')
    with pytest.raises(EvaluationError, match=rf"^{bad}: not a readable museval score file "
                                              r"\('frames'\)$"):
        compare.compare_folders([tmp_path / "a", tmp_path / "b"])
    bad.write_text("{not json")
    with pytest.raises(EvaluationError, match=rf"^{bad}: not a readable museval score file \("):
        compare.compare_folders([tmp_path / "a", tmp_path / "b"])


def test_no_score_files_and_no_common_track_are_errors(tmp_path: Path) -> None:
    write_run(tmp_path / "a", make_frames(5.0, 1, tracks=("t0",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match=r"empty: no score files \(<track>\.json\) in it"):
        compare.compare_folders([tmp_path / "a", tmp_path / "empty"])
    write_run(tmp_path / "b", make_frames(5.0, 1, tracks=("t1",)))
    with pytest.raises(EvaluationError, match=r"^no track is scored in every run: a: 1 track\(s\)"):
        compare.compare_folders([tmp_path / "a", tmp_path / "b"])
    write_run(tmp_path / "c", make_frames(5.0, 1, tracks=("t0",), sources=("piano",)))
    with pytest.raises(EvaluationError, match=r"^no source is scored in every run: a: bass, "):
        compare.compare_folders([tmp_path / "a", tmp_path / "c"])


def test_reports_and_the_box_plot(tmp_path: Path, runs: dict[str, Frames]) -> None:
    comparison = compare.compare_folders([tmp_path / n for n in runs])
    out = tmp_path / "out"
    paths = compare.write_reports(comparison, out, "SIR")
    assert paths["table"].read_text() == compare.format_table(comparison, "SIR")
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == 3 * (len(SOURCES) + 1) * len(METRICS)
    first = next(r for r in rows if r["run"] == "mid" and r["source"] == "bass" and r["metric"] == "ISR")
    diff = comparison.differences[1]["bass"]["ISR"]
    assert float(first["difference"]) == pytest.approx(diff.median, abs=1e-5)
    assert (int(first["improved"]), int(first["paired"])) == (diff.improved, 5)
    assert all(r["difference"] == "" for r in rows if r["run"] == "good")
    data = json.loads(paths["json"].read_text())
    assert data["reference"] == "good" and data["tracks"] == list(TRACKS)
    assert data["runs"][2]["overall"]["avg"]["SDR"] == comparison.summaries[2].overall["avg"]["SDR"]
    png = compare.write_boxplot(comparison, out / "compare_SIR.png", "SIR")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.csv", "compare.json", "compare_SIR.png", "compare_SIR.txt"]  # no temporary file


def test_a_box_plot_that_cannot_be_written_is_an_error(tmp_path: Path, runs: dict[str, Frames]) -> None:
    comparison = compare.compare_folders([tmp_path / n for n in runs])
    (tmp_path / "file").write_text("")
    with pytest.raises(EvaluationError, match=r"cannot write the box plot"):
        compare.write_boxplot(comparison, tmp_path / "file" / "compare.png")
