"""The evaluation runner and reports: museval's JSON format, resuming, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation import report, runner
from tests.synthetic_musdb import RATE, SOURCES, estimates, museval_metrics, write_musdb

CONFIG = EvalConfig()
#: Shorter distortion filters where museval's exact settings are not the point: faster tests.
QUICK = EvalConfig(filters_len=64)


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    root = tmp_path / "musdb"
    stems = write_musdb(root, {"A - One": 2.2, "B - Two": 1.2})
    return root, stems


def _write_estimates(folder: Path, stems: dict[str, dict[str, np.ndarray]],
                     cut: int = 0) -> None:
    for n, (track, by_source) in enumerate(stems.items()):
        refs = np.stack([by_source[s].T for s in SOURCES]).astype(np.float64)
        est = estimates(refs, seed=n)
        for j, src in enumerate(SOURCES):
            path = folder / track / f"{src}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = est[j].T[: est.shape[-1] - cut] if cut else est[j].T
            sf.write(path, np.clip(data, -1, 1), RATE, subtype="FLOAT")


def test_find_tracks_filters_and_names_what_is_missing(dataset: tuple[Path, dict]) -> None:
    root, _ = dataset
    assert [t.name for t in runner.find_tracks(root, "test")] == ["A - One", "B - Two"]
    assert [t.name for t in runner.find_tracks(root, "test", ["B - Two"])] == ["B - Two"]
    with pytest.raises(EvaluationError, match="Nope"):
        runner.find_tracks(root, "test", ["Nope"])
    with pytest.raises(EvaluationError, match="no such folder"):
        runner.find_tracks(root, "train")


def test_estimates_folder_scores_equal_museval_and_json_is_museval_format(
        dataset: tuple[Path, dict], tmp_path: Path) -> None:
    root, stems = dataset
    _write_estimates(tmp_path / "est", stems, cut=500)  # 500 samples short: padded, as museval
    tracks = runner.find_tracks(root, "test", ["A - One"])
    results = runner.evaluate_tracks(tracks, SOURCES, runner.EstimatesFolder(tmp_path / "est", 0.1),
                                     tmp_path / "out", CONFIG)
    assert [r.status for r in results] == ["scored"]
    path = tmp_path / "out" / "test" / "A - One.json"
    data = json.loads(path.read_text())
    assert data["museval_version"]
    assert [t["name"] for t in data["targets"]] == list(SOURCES)
    frame = data["targets"][0]["frames"][1]
    assert frame["time"] == 1.0 and frame["duration"] == 1.0
    assert set(frame["metrics"]) == {"SDR", "SIR", "SAR", "ISR"}
    # the same numbers as museval's code on the same (padded) signals, to its 5 decimals
    refs = np.stack([stems["A - One"][s] for s in SOURCES])
    est = np.stack([sf.read(tmp_path / "est" / "A - One" / f"{s}.wav", dtype="float32")[0]
                    for s in SOURCES]).astype(np.float64)
    est = np.pad(est, ((0, 0), (0, refs.shape[1] - est.shape[1]), (0, 0)))
    sdr, isr, sir, sar, _ = museval_metrics().bss_eval(refs, est, window=RATE, hop=RATE)
    got = runner.read_museval_json(path)
    for name, values in (("SDR", sdr), ("ISR", isr), ("SIR", sir), ("SAR", sar)):
        for j, src in enumerate(SOURCES):
            assert np.allclose(got[src][name], values[j], atol=1e-5, rtol=0), (name, src)
    no_files_left = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
    assert not no_files_left


def test_museval_aggregation_reads_the_json_unchanged(dataset: tuple[Path, dict],
                                                      tmp_path: Path) -> None:
    aggregate = pytest.importorskip("pandas") and _museval_aggregate()
    root, stems = dataset
    _write_estimates(tmp_path / "est", stems)
    results = runner.evaluate_tracks(runner.find_tracks(root, "test"), SOURCES,
                                     runner.EstimatesFolder(tmp_path / "est", 0.1),
                                     tmp_path / "out", QUICK)
    store = aggregate.EvalStore()
    store.add_eval_dir(tmp_path / "out")
    df = store.agg_frames_tracks_scores()
    summary = report.summarize(results, SOURCES)
    for src in SOURCES:
        for metric in runner.METRICS:
            assert df.loc[(src, metric)] == pytest.approx(summary.overall[src][metric], abs=1e-9)


def _museval_aggregate():  # type: ignore[no-untyped-def]
    try:
        from museval import aggregate
    except (ImportError, RuntimeError) as exc:  # import museval needs ffmpeg (through musdb)
        pytest.skip(f"museval cannot be imported here: {exc}")
    return aggregate


def test_resume_skips_scored_tracks_and_force_redoes_them(dataset: tuple[Path, dict],
                                                          tmp_path: Path) -> None:
    root, stems = dataset
    _write_estimates(tmp_path / "est", stems)
    tracks = runner.find_tracks(root, "test")
    est = runner.EstimatesFolder(tmp_path / "est", 0.1)
    first = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK)
    again = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert again[0].frames == first[0].frames
    forced = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK, force=True)
    assert [r.status for r in forced] == ["scored", "scored"]


def test_an_interrupted_write_leaves_no_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    def boom(*_: object) -> None:
        raise KeyboardInterrupt

    from cumx_cli.engine import files

    monkeypatch.setattr(files.os, "replace", boom)  # the rename inside files.replacing
    with pytest.raises(KeyboardInterrupt):
        runner.write_atomic(tmp_path / "test" / "t.json", "{}")
    assert list((tmp_path / "test").iterdir()) == []


@pytest.mark.parametrize(("problem", "message"), [
    ("missing", "estimate .*bass.wav is missing"),
    ("length", "estimate .*bass.wav has .* samples, the reference"),
    ("rate", "estimate .*bass.wav is at 22050 Hz, the reference at 44100 Hz"),
])
def test_estimate_problems_name_the_track_and_file(dataset: tuple[Path, dict], tmp_path: Path,
                                                   problem: str, message: str) -> None:
    root, stems = dataset
    _write_estimates(tmp_path / "est", stems)
    bass = tmp_path / "est" / "A - One" / "bass.wav"
    if problem == "missing":
        bass.unlink()
    elif problem == "length":
        sf.write(bass, np.zeros((RATE // 2, 2)) + 0.1, RATE)
    else:
        sf.write(bass, np.zeros((RATE, 2)) + 0.1, 22050)
    results = runner.evaluate_tracks(runner.find_tracks(root, "test"), SOURCES,
                                     runner.EstimatesFolder(tmp_path / "est", 0.1),
                                     tmp_path / "out", QUICK)
    assert [r.status for r in results] == ["error", "scored"]
    assert "track 'A - One'" in results[0].error
    import re

    assert re.search(message, results[0].error), results[0].error
    assert "\n" not in results[0].error
    assert not (tmp_path / "out" / "test" / "A - One.json").exists()


def test_silent_estimate_is_a_clear_error(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    root, stems = dataset
    _write_estimates(tmp_path / "est", stems)
    sf.write(tmp_path / "est" / "B - Two" / "drums.wav", np.zeros((int(1.2 * RATE), 2)), RATE)
    results = runner.evaluate_tracks(runner.find_tracks(root, "test", ["B - Two"]), SOURCES,
                                     runner.EstimatesFolder(tmp_path / "est", 0.1),
                                     tmp_path / "out", QUICK)
    assert "estimate of drums is silent" in results[0].error


def test_quantise_is_museval_q() -> None:
    assert runner.quantise(1.234567891) == 1.23457
    assert np.isnan(runner.quantise(float("inf")))
    assert np.isnan(runner.quantise(float("nan")))


def test_summary_median_of_medians_and_published_table(tmp_path: Path) -> None:
    frames = {s: {m: [1.0, 2.0, float("nan"), 4.0] for m in runner.METRICS} for s in SOURCES}
    frames2 = {s: {m: [10.0, 10.0] for m in runner.METRICS} for s in SOURCES}
    frames3 = {s: {m: [0.0] for m in runner.METRICS} for s in SOURCES}
    results = [runner.TrackResult("a", "scored", frames), runner.TrackResult("b", "skipped", frames2),
               runner.TrackResult("c", "scored", frames3), runner.TrackResult("d", "error")]
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
    frames = {s: {m: [1.0, 2.0] for m in runner.METRICS} for s in SOURCES}
    summary = report.summarize([runner.TrackResult("a", "scored", frames)], SOURCES)
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

    frames = {s: {m: [1.0, 2.0] for m in runner.METRICS} for s in SOURCES}
    summary = report.summarize([runner.TrackResult("a", "scored", frames)], SOURCES)
    fill_up(monkeypatch, tmp_path)
    with pytest.raises(EvaluationError) as caught:
        report.write_boxplots(summary, tmp_path)
    assert not isinstance(caught.value, report.PlotsUnavailable)
    first = tmp_path / f"boxplot_{summary.sources[0]}.png"
    assert str(caught.value) == (f"{first}: cannot write the box plot "
                                 "(No space left on device)")
    assert list(tmp_path.iterdir()) == []


def test_match_length_pads_and_cuts() -> None:
    x = torch.ones(2, 5)
    assert runner.match_length(x, 3).shape == (2, 3)
    padded = runner.match_length(x, 7)
    assert padded.shape == (2, 7) and padded[:, 5:].abs().sum() == 0
