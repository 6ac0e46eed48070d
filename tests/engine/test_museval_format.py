"""museval's per-track JSON: quantisation, the round trip, and atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

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
