"""museval's per-track score file: the JSON that ``museval.TrackStore`` writes, read and written.

A file ``OUT/<subset>/<track>.json`` holds, per target (source) and frame, the four BSSEval
metrics, with the frame's start time and duration; museval's ``EvalStore.add_eval_dir`` /
``MethodStore.add_eval_dir`` read cumx's files unchanged. As museval's ``TrackStore``, frame
scores are quantised to 5 decimals (exact decimal rounding) and an infinite score is stored as
NaN. cumx adds one key museval's readers ignore, ``RECORD_KEY``: what was scored and how
(:func:`cumx_cli.engine.evaluation.runner.score_record`). Every file of an output folder is
written through a temporary file renamed into place, so an interrupted run leaves either a
complete file or none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.files import replacing

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
#: The museval version whose JSON format is written.
MUSEVAL_FORMAT_VERSION = "0.4.1"

#: The top-level key of cumx's record of what made the scores; museval reads only "targets".
RECORD_KEY = "cumx_record"

#: Per source, per metric: the frame scores as stored in the JSON (NaN for undefined frames).
FrameTable = dict[str, dict[str, list[float]]]


def quantise(value: float) -> float:
    """museval's ``TrackStore._q``: 5 decimals (exact decimal rounding), infinities as NaN."""
    if not np.isfinite(value):
        return float("nan")
    return float(Decimal(value).quantize(Decimal(".00001")))


def frame_table(scores: dict[str, np.ndarray], sources: Sequence[str]) -> FrameTable:
    """The stored table of frame scores (metric -> (source, frame) array), quantised."""
    return {src: {m: [quantise(float(v)) for v in scores[m][i]] for m in METRICS}
            for i, src in enumerate(sources)}


def to_json(frames: FrameTable, config: EvalConfig,
            record: dict[str, Any] | None = None) -> str:
    """The per-track JSON in museval's ``TrackStore`` format, plus ``record`` under
    ``RECORD_KEY`` when given."""
    targets = []
    for source, metrics in frames.items():
        count = len(metrics["SDR"])
        targets.append({"name": source, "frames": [
            {"time": i * config.hop_seconds, "duration": config.window_seconds,
             "metrics": {m: metrics[m][i] for m in ("SDR", "SIR", "SAR", "ISR")}}
            for i in range(count)]})
    data: dict[str, Any] = {"targets": targets, "museval_version": MUSEVAL_FORMAT_VERSION}
    if record is not None:
        data[RECORD_KEY] = record
    return json.dumps(data, indent=2)


def read_record(path: Path) -> Any:
    """The record stored in a score file, or None when it has none (museval's own files, or an
    unreadable file, which :func:`read_json` then reports)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(RECORD_KEY) if isinstance(data, dict) else None


def read_json(path: Path) -> FrameTable:
    """Frame scores back from a museval JSON (cumx's or museval's own).

    Raises:
        EvaluationError: the file cannot be read or is not in museval's format.
    """
    try:
        data = json.loads(path.read_text())
        return {t["name"]: {m: [float(f["metrics"][m]) for f in t["frames"]] for m in METRICS}
                for t in data["targets"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{path}: not a readable museval score file ({exc}); delete it "
                              "or rerun with --force") from exc


def json_path(out_dir: Path, track: TrackFolder) -> Path:
    """Where a track's scores go: ``out_dir/<subset>/<track>.json``, as museval lays them out."""
    return out_dir / track.subset / f"{track.name}.json"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it into place.

    Raises:
        EvaluationError: the folder or the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write the scores ({exc.strerror or exc})") from exc
