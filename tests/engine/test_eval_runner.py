"""The evaluation runner: scores equal museval's, resuming, and one failed track stops nothing."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from cumx_cli.engine.audio.io import AudioInfo
from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.data.musdb import TrackFolder, find_tracks
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation import museval_format, report, runner
from cumx_cli.engine.evaluation.estimators import EstimatesFolder
from tests.synthetic_musdb import RATE, SOURCES, damage_estimate, museval_metrics, write_estimates

CONFIG = EvalConfig()
#: Shorter distortion filters where museval's exact settings are not the point: faster tests.
QUICK = EvalConfig(filters_len=64)

Dataset = tuple[Path, dict[str, dict[str, np.ndarray]]]


@pytest.mark.slow
def test_estimates_folder_scores_equal_museval_and_json_is_museval_format(
        musdb_hq: Dataset, tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems, cut=500)  # 500 samples short: padded, as museval
    tracks = find_tracks(root, "test", ["A - One"])
    results = runner.evaluate_tracks(tracks, SOURCES, EstimatesFolder(tmp_path / "est", 0.1),
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
    got = museval_format.read_json(path)
    for name, values in (("SDR", sdr), ("ISR", isr), ("SIR", sir), ("SAR", sar)):
        for j, src in enumerate(SOURCES):
            assert np.allclose(got[src][name], values[j], atol=1e-5, rtol=0), (name, src)
    no_files_left = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]
    assert not no_files_left


def test_museval_aggregation_reads_the_json_unchanged(musdb_hq: Dataset, tmp_path: Path) -> None:
    aggregate = pytest.importorskip("pandas") and _museval_aggregate()
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    results = runner.evaluate_tracks(find_tracks(root, "test"), SOURCES,
                                     EstimatesFolder(tmp_path / "est", 0.1), tmp_path / "out", QUICK)
    store = aggregate.EvalStore()
    store.add_eval_dir(tmp_path / "out")
    df = store.agg_frames_tracks_scores()
    summary = report.summarize(results, SOURCES)
    for src in SOURCES:
        for metric in museval_format.METRICS:
            assert df.loc[(src, metric)] == pytest.approx(summary.overall[src][metric], abs=1e-9)


def _museval_aggregate():  # type: ignore[no-untyped-def]
    try:
        from museval import aggregate
    except (ImportError, RuntimeError) as exc:  # import museval needs ffmpeg (through musdb)
        pytest.skip(f"museval cannot be imported here: {exc}")
    return aggregate


def test_resume_skips_scored_tracks_and_force_redoes_them(musdb_hq: Dataset,
                                                          tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    tracks = find_tracks(root, "test")
    est = EstimatesFolder(tmp_path / "est", 0.1)
    first = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK)
    again = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert again[0].frames == first[0].frames
    forced = runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK, force=True)
    assert [r.status for r in forced] == ["scored", "scored"]


@pytest.mark.parametrize(("problem", "message"), [
    ("missing", "estimate .*bass.wav is missing"),
    ("length", "estimate .*bass.wav has .* samples, the reference"),
    ("rate", "estimate .*bass.wav is at 22050 Hz, the reference at 44100 Hz"),
])
def test_a_failed_track_is_one_line_and_the_others_are_scored(
        musdb_hq: Dataset, tmp_path: Path, problem: str, message: str) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    damage_estimate(tmp_path / "est" / "A - One" / "bass.wav", problem)
    results = runner.evaluate_tracks(find_tracks(root, "test"), SOURCES,
                                     EstimatesFolder(tmp_path / "est", 0.1), tmp_path / "out", QUICK)
    assert [r.status for r in results] == ["error", "scored"]
    error = results[0].error
    assert error is not None and "track 'A - One'" in error and "\n" not in error
    assert re.search(message, error), error
    assert not (tmp_path / "out" / "test" / "A - One.json").exists()


def test_silent_estimate_is_a_clear_error(musdb_hq: Dataset, tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    sf.write(tmp_path / "est" / "B - Two" / "drums.wav", np.zeros((int(1.2 * RATE), 2)), RATE)
    results = runner.evaluate_tracks(find_tracks(root, "test", ["B - Two"]), SOURCES,
                                     EstimatesFolder(tmp_path / "est", 0.1), tmp_path / "out", QUICK)
    assert "estimate of drums is silent" in (results[0].error or "")


def test_one_source_cannot_be_scored(musdb_hq: Dataset, tmp_path: Path) -> None:
    root, _ = musdb_hq
    with pytest.raises(EvaluationError, match="two or more sources"):
        runner.evaluate_tracks(find_tracks(root, "test"), ["vocals"],
                               EstimatesFolder(tmp_path / "est", 0.1), tmp_path / "out", QUICK)


def test_match_length_pads_and_cuts() -> None:
    x = torch.ones(2, 5)
    assert runner.match_length(x, 3).shape == (2, 3)
    padded = runner.match_length(x, 7)
    assert padded.shape == (2, 7) and padded[:, 5:].abs().sum() == 0


class _Renamed(EstimatesFolder):
    """The same stems, recorded as made by something else (another model, say)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, 0.1)
        self.record = {"model": "other.pt", "sha256": {"other.pt": "0" * 64}}


def test_a_score_file_records_what_made_it_and_other_makers_are_rescored(
        musdb_hq: Dataset, tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    tracks = find_tracks(root, "test")
    est = EstimatesFolder(tmp_path / "est", 0.1)
    runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK)
    record = museval_format.read_record(tmp_path / "out" / "test" / "A - One.json")
    assert record == {"estimates": str((tmp_path / "est").resolve()),
                      "eval": {"window_seconds": 1.0, "hop_seconds": 1.0, "filters_len": 64,
                               "backend": "fast"}}
    other = runner.evaluate_tracks(tracks, SOURCES, _Renamed(tmp_path / "est"), tmp_path / "out",
                                   QUICK)
    assert [(r.status, r.replaced) for r in other] == [("scored", True), ("scored", True)]
    assert museval_format.read_record(tmp_path / "out" / "test" / "A - One.json")["model"] == \
        "other.pt"
    again = runner.evaluate_tracks(tracks, SOURCES, _Renamed(tmp_path / "est"), tmp_path / "out",
                                   QUICK)
    assert [(r.status, r.replaced) for r in again] == [("skipped", False), ("skipped", False)]
    # another score-changing option, or a file without a record (museval's own), is rescored
    longer = runner.evaluate_tracks(tracks[:1], SOURCES, _Renamed(tmp_path / "est"),
                                    tmp_path / "out", EvalConfig(filters_len=32))
    assert [(r.status, r.replaced) for r in longer] == [("scored", True)]
    path = tmp_path / "out" / "test" / "B - Two.json"
    data = json.loads(path.read_text())
    del data[museval_format.RECORD_KEY]
    path.write_text(json.dumps(data))
    bare = runner.evaluate_tracks(tracks[1:], SOURCES, _Renamed(tmp_path / "est"),
                                  tmp_path / "out", QUICK)
    assert [(r.status, r.replaced) for r in bare] == [("scored", True)]


def test_each_reference_is_decoded_once_per_track(musdb_hq: Dataset, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # the estimates folder checks each estimate against its reference (a copied reference is
    # refused) on the samples the runner read for scoring, not on a second decoding
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    reads: list[tuple[str, str]] = []
    original = TrackFolder.read

    def counting(self: TrackFolder, source: str, info: AudioInfo | None = None) -> torch.Tensor:
        reads.append((self.name, source))
        return original(self, source, info)

    monkeypatch.setattr(TrackFolder, "read", counting)
    tracks = find_tracks(root, "test", ["A - One"])
    results = runner.evaluate_tracks(tracks, SOURCES, EstimatesFolder(tmp_path / "est", 0.1),
                                     tmp_path / "out", QUICK)
    assert [r.status for r in results] == ["scored"]
    assert sorted(reads) == sorted(("A - One", s) for s in SOURCES)


class _RecordingFolder(EstimatesFolder):
    """An estimates folder that notes which thread read each track's estimates."""

    def __init__(self, folder: Path, reads_files: bool) -> None:
        super().__init__(folder, 0.1)
        self.reads_files = reads_files
        self.readers: list[tuple[str, str]] = []

    def estimates(self, track: TrackFolder, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        self.readers.append((track.name, threading.current_thread().name))
        return super().estimates(track, *args, **kwargs)


def test_the_next_track_is_read_ahead_with_the_same_scores_and_errors(
        musdb_hq: Dataset, tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    damage_estimate(tmp_path / "est" / "B - Two" / "bass.wav", "length")  # fails on the worker
    tracks = find_tracks(root, "test")
    ahead, in_turn = _RecordingFolder(tmp_path / "est", True), _RecordingFolder(tmp_path / "est", False)
    got = runner.evaluate_tracks(tracks, SOURCES, ahead, tmp_path / "a", QUICK)
    want = runner.evaluate_tracks(tracks, SOURCES, in_turn, tmp_path / "b", QUICK)
    assert [r.status for r in got] == [r.status for r in want] == ["scored", "error"]
    assert got[0].frames == want[0].frames and got[0].global_sdr == want[0].global_sdr
    assert got[1].error == want[1].error and "bass.wav has" in (got[1].error or "")
    main = threading.current_thread().name
    assert in_turn.readers == [("A - One", main), ("B - Two", main)]
    assert ahead.readers[0] == ("A - One", main)
    assert ahead.readers[1][0] == "B - Two" and ahead.readers[1][1].startswith("cumx-eval-read")


def test_tracks_scored_already_are_not_read_ahead(musdb_hq: Dataset, tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    tracks = find_tracks(root, "test")
    runner.evaluate_tracks(tracks, SOURCES, _RecordingFolder(tmp_path / "est", True),
                           tmp_path / "out", QUICK)
    (tmp_path / "out" / "test" / "A - One.json").unlink()
    again = _RecordingFolder(tmp_path / "est", True)
    results = runner.evaluate_tracks(tracks, SOURCES, again, tmp_path / "out", QUICK)
    assert [r.status for r in results] == ["scored", "skipped"]
    assert [name for name, _ in again.readers] == ["A - One"]


def test_scoring_is_announced_only_for_tracks_that_are_scored(musdb_hq: Dataset,
                                                               tmp_path: Path) -> None:
    root, stems = musdb_hq
    write_estimates(tmp_path / "est", stems)
    tracks = find_tracks(root, "test")
    est = EstimatesFolder(tmp_path / "est", 0.1)
    seen: list[tuple[str, str]] = []

    class Events:
        def track_started(self, track: TrackFolder) -> None:
            seen.append(("started", track.name))

        def track_scoring(self, track: TrackFolder) -> None:
            seen.append(("scoring", track.name))

        def track_finished(self, result: runner.TrackResult) -> None:
            seen.append((result.status, result.track))

        def track_warning(self, track: TrackFolder, message: str) -> None:
            seen.append(("warning", track.name))

    runner.evaluate_tracks(tracks[:1], SOURCES, est, tmp_path / "out", QUICK)  # A is reused
    damage_estimate(tmp_path / "est" / "B - Two" / "bass.wav", "missing")
    runner.evaluate_tracks(tracks, SOURCES, est, tmp_path / "out", QUICK, events=Events())
    assert seen == [("started", "A - One"), ("skipped", "A - One"),
                    ("started", "B - Two"), ("error", "B - Two")]
    seen.clear()
    runner.evaluate_tracks(tracks[:1], SOURCES, est, tmp_path / "out", QUICK, force=True,
                           events=Events())
    assert seen == [("started", "A - One"), ("scoring", "A - One"), ("scored", "A - One")]
