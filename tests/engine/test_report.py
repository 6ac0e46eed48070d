"""Evaluation reports: museval's aggregation, the published table, CSV/JSON and box plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation import report
from cumx_cli.engine.evaluation.museval_format import METRICS
from cumx_cli.engine.evaluation.runner import TrackResult
from tests.synthetic_musdb import SOURCES


def test_summary_median_of_medians_and_published_table(tmp_path: Path) -> None:
    frames = {s: {m: [1.0, 2.0, float("nan"), 4.0] for m in METRICS} for s in SOURCES}
    frames2 = {s: {m: [10.0, 10.0] for m in METRICS} for s in SOURCES}
    frames3 = {s: {m: [0.0] for m in METRICS} for s in SOURCES}
    results = [TrackResult("a", "scored", frames), TrackResult("b", "skipped", frames2),
               TrackResult("c", "scored", frames3), TrackResult("d", "error")]
    summary = report.summarize(results, SOURCES)
    assert summary.per_track["a"]["vocals"]["SDR"] == 2.0
    assert summary.overall["vocals"]["SDR"] == 2.0  # median of 2, 10, 0
    assert summary.overall["avg"]["SDR"] == 2.0
    published = report.published_scores("xumx")
    assert published is not None and published["vocals"]["SDR"] == 6.612
    assert published["avg"]["SDR"] == 5.79
    assert report.published_scores("some/file.pt") is None
    text = report.format_table(summary, published, "xumx")
    assert "6.61" in text and "published (xumx)" in text
    paths = report.write_reports(summary, tmp_path, published, "xumx")
    rows = paths["csv"].read_text().splitlines()
    assert rows[0] == "track,source,SDR,SIR,ISR,SAR"
    assert len(rows) == 1 + 3 * 4 + 5
    assert json.loads(paths["json"].read_text())["published"]["model"] == "xumx"


def test_boxplots_one_png_per_source(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    frames = {s: {m: [1.0, 2.0] for m in METRICS} for s in SOURCES}
    summary = report.summarize([TrackResult("a", "scored", frames)], SOURCES)
    paths = report.write_boxplots(summary, tmp_path)
    assert [p.name for p in paths] == [f"boxplot_{s}.png" for s in SOURCES]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_boxplots_without_matplotlib_are_skipped_with_a_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    summary = report.summarize([], SOURCES)
    with pytest.raises(report.PlotsUnavailable, match=r"^box plots skipped: matplotlib cannot be "):
        report.write_boxplots(summary, tmp_path)


def test_a_box_plot_on_a_full_disk_is_an_error_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the "plots unavailable" warning: the scores' folder is full, which the user must know;
    and no temporary file stays behind."""
    from tests.corpus import fill_up

    frames = {s: {m: [1.0, 2.0] for m in METRICS} for s in SOURCES}
    summary = report.summarize([TrackResult("a", "scored", frames)], SOURCES)
    fill_up(monkeypatch, tmp_path)
    with pytest.raises(EvaluationError) as caught:
        report.write_boxplots(summary, tmp_path)
    assert not isinstance(caught.value, report.PlotsUnavailable)
    first = tmp_path / f"boxplot_{summary.sources[0]}.png"
    assert str(caught.value) == (f"{first}: cannot write the box plot "
                                 "(No space left on device)")
    assert list(tmp_path.iterdir()) == []
