"""museval's per-track JSON: quantisation, the round trip, and atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation import museval_format
from cumx_cli.engine.evaluation.museval_format import METRICS


def test_quantise_is_museval_q() -> None:
    assert museval_format.quantise(1.234567891) == 1.23457
    assert np.isnan(museval_format.quantise(float("inf")))
    assert np.isnan(museval_format.quantise(float("nan")))


def test_frame_table_json_round_trip(tmp_path: Path) -> None:
    scores = {m: np.array([[1.0, float("inf")], [2.123456789, -3.0]]) + k
              for k, m in enumerate(METRICS)}
    frames = museval_format.frame_table(scores, ["vocals", "drums"])
    assert frames["drums"]["SDR"] == [2.12346, -3.0] and math.isnan(frames["vocals"]["SDR"][1])
    config = EvalConfig(window_seconds=2.0, hop_seconds=1.5)
    path = museval_format.json_path(tmp_path, TrackFolder("A - One", "test", tmp_path / "A"))
    assert path == tmp_path / "test" / "A - One.json"
    museval_format.write_atomic(path, museval_format.to_json(frames, config))
    data = json.loads(path.read_text())
    assert data["museval_version"] == museval_format.MUSEVAL_FORMAT_VERSION
    assert [f["time"] for f in data["targets"][0]["frames"]] == [0.0, 1.5]
    assert data["targets"][0]["frames"][0]["duration"] == 2.0
    back = museval_format.read_json(path)
    assert back["drums"] == frames["drums"] and back["vocals"]["ISR"][0] == frames["vocals"]["ISR"][0]


def test_an_unreadable_score_file_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(EvaluationError, match=r"t.json: not a readable museval score file .*--force"):
        museval_format.read_json(tmp_path / "t.json")


def test_an_interrupted_write_leaves_no_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    def boom(*_: object) -> None:
        raise KeyboardInterrupt

    from cumx_cli.engine import files

    monkeypatch.setattr(files.os, "replace", boom)  # the rename inside files.replacing
    with pytest.raises(KeyboardInterrupt):
        museval_format.write_atomic(tmp_path / "test" / "t.json", "{}")
    assert list((tmp_path / "test").iterdir()) == []


def test_the_record_is_stored_beside_museval_keys_and_read_back(tmp_path: Path) -> None:
    frames = museval_format.frame_table({m: np.ones((2, 1)) for m in METRICS}, ["a", "b"])
    record = {"estimates": "/x", "eval": {"backend": "fast"}}
    path = tmp_path / "t.json"
    path.write_text(museval_format.to_json(frames, EvalConfig(), record))
    assert set(json.loads(path.read_text())) == {"targets", "museval_version",
                                                 museval_format.RECORD_KEY}
    assert museval_format.read_record(path) == record
    path.write_text(museval_format.to_json(frames, EvalConfig()))
    assert museval_format.read_record(path) is None
    path.write_text("{not json")
    assert museval_format.read_record(path) is None


def test_global_sdr_and_lag_are_stored_beside_museval_keys_and_read_back(tmp_path: Path) -> None:
    frames = museval_format.frame_table({m: np.ones((2, 1)) for m in METRICS}, ["a", "b"])
    lag = {"samples": 1024, "sources": ["a", "b"], "checked": ["a", "b"], "rate": 44100}
    gsdr = museval_format.global_sdr_table(torch.tensor([1.234567891, float("inf")],
                                                        dtype=torch.float64), ["a", "b"])
    assert gsdr["a"] == 1.23457 and math.isnan(gsdr["b"])  # quantised as museval's frames
    path = tmp_path / "t.json"
    path.write_text(museval_format.to_json(frames, EvalConfig(), {"x": 1}, global_sdr=gsdr,
                                           lag=lag))
    data = json.loads(path.read_text())
    assert set(data) == {"targets", "museval_version", museval_format.RECORD_KEY,
                         museval_format.GLOBAL_SDR_KEY, museval_format.LAG_KEY}
    back = museval_format.read_global_sdr(path)
    assert back is not None and back["a"] == 1.23457 and math.isnan(back["b"])
    assert museval_format.read_lag(path) == lag
    assert museval_format.read_json(path) == frames  # museval's part, unchanged


def test_files_without_the_global_sdr_read_as_none(tmp_path: Path) -> None:
    frames = museval_format.frame_table({m: np.ones((2, 1)) for m in METRICS}, ["a", "b"])
    path = tmp_path / "t.json"
    path.write_text(museval_format.to_json(frames, EvalConfig(), {"x": 1}))  # an older file
    assert museval_format.read_global_sdr(path) is None and museval_format.read_lag(path) is None
    data = json.loads(path.read_text())
    data[museval_format.GLOBAL_SDR_KEY] = ["not", "a", "table"]
    path.write_text(json.dumps(data))
    assert museval_format.read_global_sdr(path) is None
    path.write_text("{not json")
    assert museval_format.read_global_sdr(path) is None and museval_format.read_lag(path) is None


def test_museval_reads_a_score_file_with_cumx_keys(tmp_path: Path) -> None:
    """museval's own readers (its JSON schema, ``json2df``, ``EvalStore.add_eval_dir``) take a
    file holding cumx's record, global SDR and lag as they take their own."""
    aggregate = _museval_aggregate()
    scores = {m: np.array([[1.0, 3.0, 2.0], [4.0, 6.0, 5.0]]) + k for k, m in enumerate(METRICS)}
    frames = museval_format.frame_table(scores, ["vocals", "drums"])
    text = museval_format.to_json(
        frames, EvalConfig(), {"estimates": "/x"}, global_sdr={"vocals": 7.5, "drums": 1.25},
        lag={"samples": -1105, "sources": ["vocals"], "checked": ["vocals", "drums"],
             "rate": 44100})
    path = tmp_path / "test" / "A - One.json"
    museval_format.write_atomic(path, text)
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    schema = json.loads(files("museval").joinpath("musdb.schema.json").read_text())
    jsonschema.validate(json.loads(text), schema)
    df = aggregate.json2df(json.loads(text), "A - One")
    assert set(df["target"]) == {"vocals", "drums"} and len(df) == 2 * 3 * 4
    store = aggregate.EvalStore()
    store.add_eval_dir(tmp_path)
    medians = store.agg_frames_tracks_scores()
    assert medians.loc[("vocals", "SDR")] == 2.0 and medians.loc[("drums", "SAR")] == 5.0 + 3


def _museval_aggregate():  # type: ignore[no-untyped-def]
    pytest.importorskip("pandas")
    try:
        from museval import aggregate
    except (ImportError, RuntimeError) as exc:  # import museval needs ffmpeg (through musdb)
        pytest.skip(f"museval cannot be imported here: {exc}")
    return aggregate
