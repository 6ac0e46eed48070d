"""Score separations of a MUSDB18-HQ-layout dataset, track by track, resumably.

The tracks come from :func:`cumx_cli.engine.data.musdb.find_tracks`, their estimates from an
:class:`~cumx_cli.engine.evaluation.estimators.Estimator`. Each track's scores are written in
museval's own per-track JSON (:mod:`~cumx_cli.engine.evaluation.museval_format`), with a record
of what made the scores (:func:`score_record`). A track whose file exists with the same record
is skipped unless ``force``, so an interrupted run goes on where it stopped; a file made by
something else (another model, estimates folder or score-changing option, or none recorded) is
scored again and overwritten, never reused.

As museval's ``eval_mus_track``: the sources present are scored jointly in MUSDB's target order
(``MUSDB_TARGETS``), and estimates are zero-padded or cut to the reference length. Beside
BSSEval, each track gets the global SDR per source (``museval_format.global_sdr``) and a check
for estimates shifted in time (``alignment.detect_lag``), reported through
``EvalEvents.track_warning``; neither changes the BSSEval scores.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

from cumx_cli.engine.audio.io import AudioInfo
from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import CumxError, EvaluationError
from cumx_cli.engine.evaluation import museval_format
from cumx_cli.engine.evaluation.alignment import Lag, describe, detect_lag
from cumx_cli.engine.evaluation.bsseval import SilentSourceError, bss_eval_v4
from cumx_cli.engine.evaluation.estimators import Estimator
from cumx_cli.engine.evaluation.museval_format import FrameTable
from cumx_cli.engine.events import EvalEvents, NoEvalEvents

log = logging.getLogger(__name__)

Status = Literal["scored", "skipped", "error"]


@dataclass
class TrackResult:
    """What happened to one track; ``frames`` holds its scores unless it failed."""

    track: str
    status: Status
    frames: FrameTable = field(default_factory=dict)
    json_path: Path | None = None
    seconds: float = 0.0
    error: str | None = None
    #: scored again because the existing file was made by something else
    replaced: bool = False
    #: the global SDR per source, dB (empty: not known, a score file written before it)
    global_sdr: dict[str, float] = field(default_factory=dict)
    #: the constant lag the estimates were found shifted by (``alignment``), or None
    lag: Lag | None = None


@dataclass(frozen=True)
class TrackScores:
    """One track's scores: BSSEval v4 per frame, the global SDR per source (both as the JSON
    stores them) and the lag of the estimates, if one was found."""

    frames: FrameTable
    global_sdr: dict[str, float]
    lag: Lag | None


def score_record(estimator: Estimator, config: EvalConfig) -> dict[str, Any]:
    """What a score file records of what made it: the estimator's record and the
    ``EvalConfig`` fields that change scores, as the JSON reads them back."""
    record = {**estimator.record,
              "eval": {"window_seconds": config.window_seconds,
                       "hop_seconds": config.hop_seconds,
                       "filters_len": config.filters_len, "backend": config.backend}}
    result: dict[str, Any] = json.loads(json.dumps(record))  # tuples as lists, as read back
    return result


def match_length(estimate: torch.Tensor, length: int) -> torch.Tensor:
    """museval's ``pad_or_truncate``: zero-pad or cut the end. Shapes: (channel, time)."""
    if estimate.shape[-1] >= length:
        return estimate[..., :length]
    return torch.nn.functional.pad(estimate, (0, length - estimate.shape[-1]))


def score(references: torch.Tensor, estimates: torch.Tensor, rate: int, config: EvalConfig,
          device: torch.device | None = None) -> dict[str, np.ndarray]:
    """Frame scores with the configured backend: metric -> (source, frame) float64.

    Shapes:
        references, estimates: (source, channel, time), same shape
    """
    window = int(config.window_seconds * rate)
    hop = int(config.hop_seconds * rate)
    if config.backend == "museval":
        return _score_museval(references, estimates, window, hop)
    result = bss_eval_v4(references, estimates, window=window, hop=hop,
                         filters_len=config.filters_len, device=device)
    return {name: value.numpy() for name, value in result.as_dict().items()}


def _score_museval(references: torch.Tensor, estimates: torch.Tensor, window: int,
                   hop: int) -> dict[str, np.ndarray]:
    """museval's own BSSEval v4, called as ``museval.evaluate(..., mode="v4")`` calls it (the
    signals already have equal lengths, so its padding does nothing)."""
    metrics = museval_metrics()
    ref = references.double().permute(0, 2, 1).numpy()
    est = estimates.double().permute(0, 2, 1).numpy()
    sdr, isr, sir, sar, _ = metrics.bss_eval(ref, est, compute_permutation=False, window=window,
                                             hop=hop, framewise_filters=False,
                                             bsseval_sources_version=False)
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}


def museval_metrics() -> ModuleType:
    """museval's ``metrics`` module, loaded from museval's folder on its own.

    ``import museval`` imports musdb, whose stempeg refuses to load without ffmpeg and ffprobe
    on PATH, even for WAV data; the metrics need only numpy and scipy. Loaded this way,
    ``--backend museval`` needs no ffmpeg.

    Raises:
        EvaluationError: museval is not installed.
    """
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError("--backend museval needs the museval package (pip install "
                              "'cumx[eval]'), or use --backend fast")
    cached = sys.modules.get("_cumx_museval_metrics")
    if cached is not None:
        return cached
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("_cumx_museval_metrics", path)
    if module_spec is None or module_spec.loader is None:
        raise EvaluationError(f"{path}: cannot load museval's metrics")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    sys.modules["_cumx_museval_metrics"] = module
    return module


def _reference_infos(track: TrackFolder, sources: Sequence[str]) -> dict[str, AudioInfo]:
    infos = {}
    for source in sources:
        path = track.stem_path(source)
        if not path.exists():
            raise EvaluationError(f"track {track.name!r}: reference {path} is missing")
        infos[source] = track.probe(source)  # a wav file, or a stream of a .stem.mp4
    return infos


@dataclass(frozen=True)
class TrackInputs:
    """What one track is scored on: its references and estimates, cut or padded to the
    references' length, at one sample rate.

    Shapes:
        refs, ests: (source, channel, time) float32, on the CPU
    """

    track: TrackFolder
    sources: tuple[str, ...]
    infos: dict[str, AudioInfo]
    rate: int
    refs: torch.Tensor
    ests: torch.Tensor


def load_inputs(track: TrackFolder, sources: Sequence[str], estimator: Estimator) -> TrackInputs:
    """Read a track's references and get its estimates (read from disk, or separated)."""
    infos = _reference_infos(track, sources)
    rates = {info.sample_rate for info in infos.values()}
    lengths = {info.frames for info in infos.values()}
    if len(rates) > 1 or len(lengths) > 1:
        raise EvaluationError(f"track {track.name!r}: the reference stems differ in sample rate "
                              "or length; the dataset folder is inconsistent")
    rate, length = rates.pop(), lengths.pop()
    loaded = {s: track.read(s, infos[s]) for s in sources}  # read once: the estimator checks too
    estimates = estimator.estimates(track, sources, infos, loaded)
    refs = torch.stack([loaded[s] for s in sources])
    del loaded
    ests = torch.stack([match_length(estimates[s].float().cpu(), length) for s in sources])
    return TrackInputs(track, tuple(sources), infos, rate, refs, ests)


def score_inputs(inputs: TrackInputs, config: EvalConfig,
                 device: torch.device | None = None) -> TrackScores:
    """Score one track's estimates, and check them for a constant lag (scores unchanged)."""
    track, sources, refs, ests = inputs.track, inputs.sources, inputs.refs, inputs.ests
    try:
        scores = score(refs, ests, inputs.rate, config, device)
    except SilentSourceError as exc:
        what = inputs.infos[sources[exc.index]].path if exc.kind == "reference" else \
            f"the estimate of {sources[exc.index]}"
        raise EvaluationError(f"track {track.name!r}: {what} is silent over the whole track; "
                              "BSSEval (and museval) cannot score it") from exc
    except ValueError as exc:  # museval's own input validation
        raise EvaluationError(f"track {track.name!r}: museval refused the input ({exc})") from exc
    global_sdr = museval_format.global_sdr_table(museval_format.global_sdr(refs, ests), sources)
    return TrackScores(museval_format.frame_table(scores, sources), global_sdr,
                       detect_lag(refs, ests, inputs.rate, sources))


def _reused(track: TrackFolder, out_dir: Path, record: dict[str, Any]) -> TrackResult | None:
    """The track's existing score file, read back, when it records the same ``record``."""
    path = museval_format.json_path(out_dir, track)
    if path.exists() and museval_format.read_record(path) == record:
        return TrackResult(track.name, "skipped", museval_format.read_json(path), path,
                           global_sdr=museval_format.read_global_sdr(path) or {},
                           lag=Lag.from_dict(museval_format.read_lag(path)))
    return None


def _score_and_write(inputs: TrackInputs, out_dir: Path, config: EvalConfig,
                     record: dict[str, Any], device: torch.device | None,
                     replacing: bool) -> TrackResult:
    """Score and write one track; ``replacing``: an existing file there was made by something
    else (it was not reused, and not because of ``force``)."""
    path = museval_format.json_path(out_dir, inputs.track)
    replaced = replacing and path.exists()
    scores = score_inputs(inputs, config, device)
    museval_format.write_atomic(path, museval_format.to_json(
        scores.frames, config, record, global_sdr=scores.global_sdr,
        lag=scores.lag.to_dict() if scores.lag is not None else None))
    return TrackResult(inputs.track.name, "scored", scores.frames, path, replaced=replaced,
                       global_sdr=scores.global_sdr, lag=scores.lag)


def evaluate_tracks(tracks: Sequence[TrackFolder], sources: Sequence[str], estimator: Estimator,
                    out_dir: Path, config: EvalConfig, *, force: bool = False,
                    device: torch.device | None = None,
                    events: EvalEvents | None = None) -> list[TrackResult]:
    """Score every track, writing ``out_dir/<subset>/<track>.json``; one failure stops nothing.

    A track whose JSON exists and records the same :func:`score_record` is read back instead
    of scored, unless ``force``; one with another record or none is scored again
    (``TrackResult.replaced``).

    When the estimator reads its estimates from disk (``estimator.reads_files``), the next
    track to score is read on a worker thread while this one is scored (decoding releases the
    GIL): at most two tracks' samples are in memory. A separator's estimates are made in turn,
    on the calling thread, as the separation needs the cores itself.
    """
    if len(sources) < 2:
        raise EvaluationError(f"BSSEval scores two or more sources jointly, got {list(sources)}")
    events = events or NoEvalEvents()
    record = score_record(estimator, config)
    reusable: dict[int, TrackResult | None] = {}  # by position; read once

    def reuse(k: int) -> TrackResult | None:
        if force:
            return None
        if k not in reusable:
            reusable[k] = _reused(tracks[k], out_dir, record)
        return reusable[k]

    def to_score_after(k: int) -> TrackFolder | None:
        for later in range(k + 1, len(tracks)):
            try:
                if reuse(later) is None:
                    return tracks[later]
            except CumxError:  # reported in its own turn
                return None
        return None

    results = []
    with _Prefetch(estimator, sources, bool(getattr(estimator, "reads_files", False))) as inputs:
        for k, track in enumerate(tracks):
            events.track_started(track)
            started = time.perf_counter()
            try:
                result = reuse(k)
                if result is None:
                    loaded = inputs.take(track)
                    inputs.ahead(to_score_after(k))  # read while this one is scored
                    events.track_scoring(track)
                    result = _score_and_write(loaded, out_dir, config, record, device,
                                              replacing=not force)
            except CumxError as exc:
                result = TrackResult(track.name, "error", error=str(exc))
            result.seconds = time.perf_counter() - started
            if result.lag is not None:  # found now, or when the reused file was scored
                events.track_warning(track, describe(result.lag, track.name))
            events.track_finished(result)
            results.append(result)
    return results


class _Prefetch:
    """Loads tracks' inputs (:func:`load_inputs`), one track ahead on a worker thread when
    ``enabled``, else when they are taken."""

    def __init__(self, estimator: Estimator, sources: Sequence[str], enabled: bool) -> None:
        self.estimator = estimator
        self.sources = tuple(sources)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cumx-eval-read") \
            if enabled else None
        self.pending: tuple[TrackFolder, Future[TrackInputs]] | None = None

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def take(self, track: TrackFolder) -> TrackInputs:
        """The track's inputs: read ahead already, or read now. Raises what reading raised."""
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] is track:
            return pending[1].result()
        if pending is not None:  # read ahead for another track: not wanted after all
            pending[1].cancel()
        return load_inputs(track, self.sources, self.estimator)

    def ahead(self, track: TrackFolder | None) -> None:
        """Start reading ``track`` (the next one to score), if reading ahead."""
        if self.pool is not None and track is not None:
            self.pending = (track, self.pool.submit(load_inputs, track, self.sources,
                                                    self.estimator))
