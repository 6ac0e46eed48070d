"""``cumx compare``: the table on stdout, the files under --out, notes and errors as one line with
the documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.evaluation.museval_format import METRICS, to_json
from tests.cli.helpers import cumx, error_lines, files_under, show

SOURCES = ("vocals", "drums", "bass", "other")


def write_run(folder: Path, quality: float, tracks: tuple[str, ...] = ("a", "b", "c"),
              record: bool = True) -> Path:
    """``folder/test/<track>.json``: every frame of track ``i`` scores ``quality + i`` dB (SDR;
    the other metrics 10 dB more), one frame NaN."""
    for i, track in enumerate(tracks):
        frames = {s: {m: [quality + i + (m != "SDR") * 10.0] * 3 + [float("nan")] for m in METRICS}
                  for s in SOURCES}
        path = folder / "test" / f"{track}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_json(frames, EvalConfig(), {"estimates": "x"} if record else None))
    return folder


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    return [write_run(tmp_path / "base", 4.0), write_run(tmp_path / "better", 5.5, record=False),
            write_run(tmp_path / "worse", 3.0)]


def test_three_runs_table_files_and_plot(tmp_path: Path, three: list[Path]) -> None:
    out = tmp_path / "cmp"
    result = cumx("compare", *three, "--out", out)
    assert result.exit_code == 0, show(result)
    lines = result.stdout.splitlines()
    assert lines[0] == ("SDR (dB): median over frames, then median over 3 track(s); avg: mean "
                        "over sources")
    assert lines[1].split() == ["run", *SOURCES, "avg"]
    # per track 4, 5, 6 dB: median over tracks 5; better 6.5, worse 4
    assert lines[2].split() == ["base", *["5.00"] * 5]
    assert lines[3].split() == ["better", *["6.50"] * 5]
    assert lines[4].split() == ["worse", *["4.00"] * 5]
    assert lines[6].startswith("SDR paired with base: median over tracks of (run - base), and "
                               "tracks where run > base")
    assert lines[7].split() == ["run", *SOURCES, "avg"]
    assert lines[8].split() == ["better", *["+1.50", "3/3"] * 5]
    assert lines[9].split() == ["worse", *["-1.00", "0/3"] * 5]
    assert files_under(out) == {"compare_SDR.txt", "compare_SDR.png", "compare.csv", "compare.json"}
    assert (out / "compare_SDR.txt").read_text() == result.stdout
    assert (out / "compare_SDR.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["base", "better", "worse"]
    assert "warning" not in result.stderr


def test_metric_names_and_a_subset_folder(tmp_path: Path, three: list[Path]) -> None:
    result = cumx("compare", three[0] / "test", three[1], "--names", "x, y", "--metric", "SIR",
                  "-o", tmp_path / "cmp")
    assert result.exit_code == 0, show(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SIR (dB)")
    assert lines[2].split() == ["x", *["15.00"] * 5]
    assert lines[-1].split() == ["y", *["+1.50", "3/3"] * 5]
    assert (tmp_path / "cmp" / "compare_SIR.png").is_file()


def test_tracks_missing_from_a_run_are_left_out_with_one_line(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / "r1", 4.0), write_run(tmp_path / "r2", 4.0, tracks=("a", "b"))]
    result = cumx("compare", *runs, "-o", tmp_path / "cmp")
    assert result.exit_code == 0, show(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 1 track(s) left out, not scored in every run: c (not in r2)"]
    assert "median over 2 track(s)" in result.stdout.splitlines()[0]


def test_a_folder_that_does_not_exist_is_a_usage_error(tmp_path: Path, three: list[Path]) -> None:
    result = cumx("compare", three[0], tmp_path / "nope")
    assert result.exit_code == 2, show(result)
    assert "does not exist" in " ".join(result.stderr.replace("│", " ").split())  # click's box


@pytest.mark.parametrize(("extra", "message"), [
    ([], "error: comparing needs two or more score folders, got 1"),
    (["--names", "a,b"], "error: comparing needs two or more score folders, got 1"),
])
def test_one_run_is_a_usage_error(tmp_path: Path, three: list[Path], extra: list[str],
                                  message: str) -> None:
    result = cumx("compare", three[0], *extra, "-o", tmp_path / "cmp")
    assert result.exit_code == 2, show(result)
    assert error_lines(result) == [message]
    assert not (tmp_path / "cmp").exists()


def test_names_that_do_not_fit_are_a_usage_error_under_the_flag(tmp_path: Path,
                                                                three: list[Path]) -> None:
    result = cumx("compare", *three, "--names", "a,b", "-o", tmp_path / "cmp")
    assert result.exit_code == 2, show(result)
    assert error_lines(result) == ["error: --names: 2 name(s) for 3 score folder(s)"]


def test_a_metric_that_does_not_exist_is_a_usage_error(three: list[Path]) -> None:
    result = cumx("compare", *three, "--metric", "PES")
    assert result.exit_code == 2, show(result)


def test_unusable_score_folders_fail_with_one_line(tmp_path: Path, three: list[Path]) -> None:
    (tmp_path / "empty").mkdir()
    result = cumx("compare", three[0], tmp_path / "empty", "-o", tmp_path / "cmp")
    assert result.exit_code == 1, show(result)
    [line] = error_lines(result)
    assert line.startswith(f"error: {tmp_path / 'empty'}: no score files (<track>.json) in it")
    bad = three[1] / "test" / "b.json"
    bad.write_text("[1, 2")
    result = cumx("compare", *three, "-o", tmp_path / "cmp")
    assert result.exit_code == 1, show(result)
    [line] = error_lines(result)
    assert line.startswith(f"error: {bad}: not a readable museval score file (")
    other = write_run(tmp_path / "other", 1.0, tracks=("z",))
    result = cumx("compare", three[0], other, "-o", tmp_path / "cmp")
    assert result.exit_code == 1, show(result)
    [line] = error_lines(result)
    assert line.startswith("error: no track is scored in every run: base: 3 track(s) in ")
    assert not (tmp_path / "cmp").exists()
    assert result.stdout == ""


def test_help_lists_the_options() -> None:
    result = cumx("compare", "--help")
    assert result.exit_code == 0, show(result)
    for option in ("RUN_DIR", "--metric", "--names", "--subset", "--out"):
        assert option in result.stdout, option
    assert "compare" in cumx("--help").stdout


def test_the_numbers_match_numpy_on_random_scores(tmp_path: Path) -> None:
    """The table's cells against an independent computation from the JSON files themselves."""
    rng = np.random.default_rng(0)
    folders = []
    for run in ("p", "q", "r"):
        for track in ("t1", "t2", "t3", "t4"):
            frames = {s: {m: [round(float(v), 5) for v in rng.normal(5, 3, 6)] for m in METRICS}
                      for s in SOURCES}
            path = tmp_path / run / "test" / f"{track}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_json(frames, EvalConfig()))
        folders.append(tmp_path / run)
    result = cumx("compare", *folders, "-o", tmp_path / "cmp")
    assert result.exit_code == 0, show(result)
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:5]}
    for folder in folders:
        medians = {s: np.median([np.median([f["metrics"]["SDR"] for f in target["frames"]])
                                 for p in sorted((folder / "test").glob("*.json"))
                                 for target in json.loads(p.read_text())["targets"]
                                 if target["name"] == s]) for s in SOURCES}
        expected = [f"{medians[s]:.2f}" for s in SOURCES] + [f"{np.mean(list(medians.values())):.2f}"]
        assert rows[folder.name] == expected
