"""Evaluation reports: museval's aggregation, the published table, CSV/JSON and box plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumx_cli.engine.data.musdb import TrackFolder
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
    assert published is not None and published.scores["vocals"]["SDR"] == 6.612
    assert published.scores["avg"]["SDR"] == 5.79 and published.dataset == "MUSDB18"
    assert report.published_scores("some/file.pt") is None
    text = report.format_table(summary, published, "MUSDB18")  # scored on the same set
    assert "6.61" in text and "published (xumx)" in text and "not shown" not in text
    paths = report.write_reports(summary, tmp_path, published, "MUSDB18")
    rows = paths["csv"].read_text().splitlines()
    assert rows[0] == "track,source,SDR,SIR,ISR,SAR,global_SDR"
    assert len(rows) == 1 + 3 * 4 + 5  # no global SDR known: no mean-over-tracks rows
    data = json.loads(paths["json"].read_text())
    assert data["published"]["model"] == "xumx" and data["published"]["comparable"] is True
    assert data["dataset"] == "MUSDB18"


@pytest.mark.parametrize(("layout", "dataset"), [("wav", "MUSDB18-HQ"), ("stem", "MUSDB18")])
def test_the_set_scored_comes_from_the_layout(layout: report.Layout, dataset: str) -> None:
    assert report.dataset_of_layout(layout) == dataset
    root = Path("/data")
    tracks = [TrackFolder("A", "test", root / "test" / "A")] if layout == "wav" else \
        [TrackFolder("A", "test", root / "test", root / "test" / "A.stem.mp4")]
    assert report.layout_of(tracks) == layout


def test_published_scores_of_another_set_are_one_line_instead(tmp_path: Path) -> None:
    """xumx was measured on MUSDB18 (compressed): on a wav-layout (MUSDB18-HQ) set its numbers
    are not printed beside cumx's, and one line says why."""
    frames = {s: {m: [1.0, 2.0] for m in METRICS} for s in SOURCES}
    summary = report.summarize([TrackResult("a", "scored", frames)], SOURCES)
    published = report.published_scores("xumx")
    assert published is not None
    text = report.format_table(summary, published, report.dataset_of_layout("wav"))
    line = "published (xumx) not shown: published on MUSDB18 (compressed); this is MUSDB18-HQ"
    assert text.splitlines().count(line) == 1
    assert "6.61" not in text and "| published" not in text
    stem = report.format_table(summary, published, report.dataset_of_layout("stem"))
    assert "| published (xumx)" in stem and "6.61" in stem and "not shown" not in stem
    paths = report.write_reports(summary, tmp_path, published, "MUSDB18-HQ")
    assert paths["summary"].read_text() == text
    data = json.loads(paths["json"].read_text())["published"]
    assert data["comparable"] is False and data["note"] == line and data["dataset"] == "MUSDB18"


def test_every_published_table_has_its_set_and_matches_the_registry() -> None:
    """The registry's average SDR, the per-source table and the set agree for every model; the
    Open-Unmix README's umxhq scores fill what the registry once left "not given"."""
    from cumx_cli.engine.weights.registry import CATALOGUE

    for name in report.PUBLISHED_SCORES:
        published = report.published_scores(name)
        assert published is not None, name
        assert published.dataset == CATALOGUE[name].sdr_set == "MUSDB18", name
        sdr = CATALOGUE[name].sdr
        assert sdr is not None and round(published.scores["avg"]["SDR"], 2) == sdr, name
        per_source = [published.scores[s]["SDR"] for s in SOURCES]
        assert abs(sum(per_source) / 4 - sdr) < 0.006, name  # the average of its own table
    umxhq = report.published_scores("umxhq")
    assert umxhq is not None
    assert {s: umxhq.scores[s]["SDR"] for s in SOURCES} == {
        "vocals": 6.25, "drums": 6.04, "bass": 5.07, "other": 4.28}
    assert umxhq.scores["avg"]["SDR"] == 5.41
    assert {"umx", "xumxl", "umxl"} <= set(report.PUBLISHED_SCORES)


def test_global_sdr_mean_and_median_over_tracks_and_in_the_reports(tmp_path: Path) -> None:
    frames = {s: {m: [1.0] for m in METRICS} for s in SOURCES}
    gsdr = [{"vocals": 1.0, "drums": 2.0, "bass": 3.0, "other": 4.0},
            {"vocals": 2.0, "drums": 2.0, "bass": 3.0, "other": 4.0},
            {"vocals": 9.0, "drums": 2.0, "bass": 3.0, "other": 4.0}]
    results = [TrackResult(t, "scored", frames, global_sdr=g) for t, g in zip("abc", gsdr, strict=True)]
    results.append(TrackResult("old", "skipped", frames))  # a score file from before: n/a
    summary = report.summarize(results, SOURCES)
    assert set(summary.global_sdr) == {"a", "b", "c"}
    assert summary.global_mean["vocals"] == 4.0 and summary.global_median["vocals"] == 2.0
    assert summary.global_mean["avg"] == (4.0 + 2 + 3 + 4) / 4
    assert summary.global_median["avg"] == (2.0 + 2 + 3 + 4) / 4
    text = report.format_table(summary)
    lines = text.splitlines()
    assert lines[0].startswith("BSSEval v4")  # the headline, first
    assert any(line.startswith("global SDR (MDX 2021") and "over 3 of 4 track(s)" in line
               for line in lines), text
    assert "vocals     4.00    2.00" in lines
    paths = report.write_reports(summary, tmp_path)
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].endswith(",global_SDR")
    assert "a,vocals,1.00000,1.00000,1.00000,1.00000,1.00000" in rows
    assert "old,vocals,1.00000,1.00000,1.00000,1.00000," in rows  # n/a: empty
    assert "(median over tracks),vocals,1.00000,1.00000,1.00000,1.00000,2.00000" in rows
    assert "(mean over tracks),vocals,,,,,4.00000" in rows
    assert "(mean over tracks),avg,,,,,3.25000" in rows
    data = json.loads(paths["json"].read_text())["global_sdr"]
    assert data["eps"] == 1e-7 and data["num_tracks"] == 3
    assert data["mean_over_tracks"]["vocals"] == 4.0 and data["median_over_tracks"]["vocals"] == 2.0
    assert "old" not in data["per_track"]


def test_global_sdr_of_old_score_files_is_na() -> None:
    frames = {s: {m: [1.0] for m in METRICS} for s in SOURCES}
    summary = report.summarize([TrackResult("old", "skipped", frames)], SOURCES)
    text = report.format_table(summary)
    assert "global SDR (MDX 2021 / demucs nSDR: whole track, no distortion filter): n/a" in text
    assert summary.global_mean == {} and "(mean over tracks)" not in report.scores_csv(summary)


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
