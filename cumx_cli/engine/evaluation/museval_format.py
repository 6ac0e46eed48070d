"""museval's per-track score file: the JSON that ``museval.TrackStore`` writes, read and written,
and the one score cumx adds beside museval's: the global SDR.

A file ``OUT/<subset>/<track>.json`` holds, per target (source) and frame, the four BSSEval
metrics, with the frame's start time and duration; museval's ``EvalStore.add_eval_dir`` /
``MethodStore.add_eval_dir`` read cumx's files unchanged. As museval's ``TrackStore``, frame
scores are quantised to 5 decimals (exact decimal rounding) and an infinite score is stored as
NaN. cumx adds top-level keys that museval's readers ignore (they read only ``targets``):
``RECORD_KEY``, what was scored and how (:func:`cumx_cli.engine.evaluation.runner.score_record`);
``GLOBAL_SDR_KEY``, the global SDR of each source (:func:`global_sdr`); and, only when the
estimates were found shifted against the references, ``LAG_KEY``
(:class:`~cumx_cli.engine.evaluation.alignment.Lag`). Every file of an output folder is written
through a temporary file renamed into place, so an interrupted run leaves either a complete file
or none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.files import replacing
from cumx_cli.engine.shapes import check_shape

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
#: The museval version whose JSON format is written.
MUSEVAL_FORMAT_VERSION = "0.4.1"

#: The top-level key of cumx's record of what made the scores; museval reads only "targets".
RECORD_KEY = "cumx_record"
#: The top-level key of the global SDR per source (dB; absent from files written before it).
GLOBAL_SDR_KEY = "cumx_global_sdr"
#: The top-level key of the lag the estimates were found shifted by (absent when none was).
LAG_KEY = "cumx_lag"
#: demucs's ``new_sdr`` regulariser, added to both energies ("avoid numerical errors").
GLOBAL_SDR_EPS = 1e-7
#: Samples per block (channels one after the other) when summing energies: float64 copies of
#: one block at a time, small enough to stay in cache.
_GLOBAL_SDR_BLOCK = 1 << 16

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


def global_sdr(references: torch.Tensor, estimates: torch.Tensor) -> torch.Tensor:
    """The global SDR of each source, in dB: one number for the whole track.

    ``10 log10((sum ref^2 + eps) / (sum (ref - est)^2 + eps))``, the sums over every channel and
    sample, ``eps`` = :data:`GLOBAL_SDR_EPS`: the MDX 2021 challenge's SDR, as demucs's
    ``new_sdr`` computes it (``demucs/evaluate.py``, float64, "adapted from AIcrowd/music-
    demixing-challenge-starter-kit"), reported there as ``nsdr``. No distortion filter, no
    frames: an estimate's gain error, filtering or shift all count as error. Summed in float64
    over blocks of time, so a long track needs no float64 copy of itself.

    Shapes:
        references, estimates: (source, channel, time), same shape
        returns: (source,) float64
    """
    check_shape(references, ("source", "channel", "time"))
    check_shape(estimates, ("source", "channel", "time"), source=references.shape[0],
                channel=references.shape[1], time=references.shape[2])
    signal = torch.zeros(references.shape[0], dtype=torch.float64)
    error = torch.zeros(references.shape[0], dtype=torch.float64)
    refs, ests = references.flatten(1), estimates.flatten(1)  # (source, channel * time)
    for start in range(0, refs.shape[-1], _GLOBAL_SDR_BLOCK):
        ref = refs[:, start:start + _GLOBAL_SDR_BLOCK].double()
        diff = ests[:, start:start + _GLOBAL_SDR_BLOCK].double().sub_(ref)
        signal += torch.linalg.vecdot(ref, ref)  # sums of squares without squared temporaries
        error += torch.linalg.vecdot(diff, diff)
    return 10 * torch.log10((signal + GLOBAL_SDR_EPS) / (error + GLOBAL_SDR_EPS))


def global_sdr_table(values: torch.Tensor, sources: Sequence[str]) -> dict[str, float]:
    """The stored global SDR: source -> dB, quantised as the frame scores are."""
    return {src: quantise(float(v)) for src, v in zip(sources, values.tolist(), strict=True)}


def to_json(frames: FrameTable, config: EvalConfig, record: dict[str, Any] | None = None, *,
            global_sdr: dict[str, float] | None = None, lag: dict[str, Any] | None = None) -> str:
    """The per-track JSON in museval's ``TrackStore`` format, plus ``record`` under
    ``RECORD_KEY``, ``global_sdr`` under ``GLOBAL_SDR_KEY`` and ``lag`` under ``LAG_KEY``, each
    when given."""
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
    if global_sdr is not None:
        data[GLOBAL_SDR_KEY] = global_sdr
    if lag is not None:
        data[LAG_KEY] = lag
    return json.dumps(data, indent=2)


def _read_key(path: Path, key: str) -> Any:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def read_record(path: Path) -> Any:
    """The record stored in a score file, or None when it has none (museval's own files, or an
    unreadable file, which :func:`read_json` then reports)."""
    return _read_key(path, RECORD_KEY)


def read_global_sdr(path: Path) -> dict[str, float] | None:
    """The global SDR stored in a score file (source -> dB), or None when it has none (a file
    written before cumx stored it, museval's own files) or holds something else."""
    data = _read_key(path, GLOBAL_SDR_KEY)
    if not isinstance(data, dict):
        return None
    try:
        return {str(src): float(value) for src, value in data.items()}
    except (TypeError, ValueError):
        return None


def read_lag(path: Path) -> Any:
    """The lag stored in a score file (as :meth:`~cumx_cli.engine.evaluation.alignment.Lag.
    to_dict` wrote it), or None."""
    return _read_key(path, LAG_KEY)


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
