"""Score separations of a MUSDB18-HQ-layout dataset, track by track, resumably.

A dataset is ``ROOT/<subset>/<track>/{mixture,vocals,drums,bass,other}.wav`` (the MUSDB18-HQ
layout). Estimates come from an :class:`Estimator`: a folder of stems already on disk
(:class:`EstimatesFolder`, ``DIR/<track>/<source>.wav`` from any tool) or a separator run on the
track's mixture (:class:`SeparatorEstimator`). Each track's scores are written as museval's own
per-track JSON (``OUT/<subset>/<track>.json``, which museval's ``EvalStore.add_eval_dir`` /
``MethodStore.add_eval_dir`` read unchanged), through a temporary file renamed into place, so an
interrupted run leaves either a complete JSON or none; tracks that have one are skipped unless
``force``.

As museval's ``eval_mus_track``: the sources present are scored jointly in MUSDB's target order
(vocals, drums, bass, other), estimates are zero-padded or cut to the reference length, frame
scores are quantised to 5 decimals and an infinite score is stored as NaN.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from cumx_cli.engine.audio.io import AudioInfo, probe, read_audio
from cumx_cli.engine.config import EvalConfig
from cumx_cli.engine.errors import ConfigError, CumxError, EvaluationError
from cumx_cli.engine.evaluation.bsseval import SilentSourceError, bss_eval_v4
from cumx_cli.engine.files import replacing

log = logging.getLogger(__name__)

#: MUSDB18's targets that are scored, in musdb's order (museval builds its lists in this order).
MUSDB_TARGETS: tuple[str, ...] = ("vocals", "drums", "bass", "other")
METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
#: The museval version whose JSON format is written.
MUSEVAL_FORMAT_VERSION = "0.4.1"

Status = Literal["scored", "skipped", "error"]
#: Per source, per metric: the frame scores as stored in the JSON (NaN for undefined frames).
FrameTable = dict[str, dict[str, list[float]]]

@dataclass(frozen=True)
class MusdbTrack:
    """One track folder of the dataset."""

    name: str
    subset: str
    folder: Path

    def stem_path(self, source: str) -> Path:
        return self.folder / f"{source}.wav"

@dataclass
class TrackResult:
    """What happened to one track; ``frames`` holds its scores unless it failed."""

    track: str
    status: Status
    frames: FrameTable = field(default_factory=dict)
    json_path: Path | None = None
    seconds: float = 0.0
    error: str | None = None

class Estimator(Protocol):
    """Gives the estimates of a track's sources."""

    def estimates(self, track: MusdbTrack, sources: Sequence[str],
                  references: dict[str, AudioInfo]) -> dict[str, torch.Tensor]:
        """Estimates (channel, time) float at the references' rate, one per source."""

class Events:
    """Progress hooks; the default does nothing."""

    def track_started(self, track: MusdbTrack) -> None: ...

    def track_finished(self, result: TrackResult) -> None: ...

# -- dataset -----------------------------------------------------------------------------------

def find_tracks(root: Path, subset: str, names: Sequence[str] | None = None) -> list[MusdbTrack]:
    """The track folders of ``root/subset``, sorted by name, optionally only ``names``.

    Raises:
        EvaluationError: no such folder, a stem-file (``.stem.mp4``) dataset, no track, or a
            requested name that is not there.
    """
    folder = root / subset
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such folder; --musdb must point at a MUSDB18-HQ "
                              "root holding train/ and test/")
    if any(folder.glob("*.stem.mp4")):
        raise EvaluationError(f"{folder} holds .stem.mp4 files; cumx reads the MUSDB18-HQ wav "
                              "layout: convert with `musdbconvert ROOT ROOT-WAV` (from musdb)")
    tracks = [MusdbTrack(p.name, subset, p) for p in sorted(folder.iterdir())
              if p.is_dir() and not p.name.startswith(".")]
    if names:
        known = {t.name: t for t in tracks}
        missing = [n for n in names if n not in known]
        if missing:
            raise EvaluationError(f"track(s) not found in {folder}: {', '.join(missing)}")
        tracks = [known[n] for n in names]
    if not tracks:
        raise EvaluationError(f"{folder}: no track folders found")
    return tracks

def _reference_infos(track: MusdbTrack, sources: Sequence[str]) -> dict[str, AudioInfo]:
    infos = {}
    for source in sources:
        path = track.stem_path(source)
        if not path.exists():
            raise EvaluationError(f"track {track.name!r}: reference {path} is missing")
        infos[source] = probe(path)
    return infos

# -- estimators --------------------------------------------------------------------------------

class EstimatesFolder:
    """Stems on disk: ``folder/<track>/<source>.wav``."""

    def __init__(self, folder: Path, max_mismatch_seconds: float) -> None:
        self.folder = folder
        self.max_mismatch_seconds = max_mismatch_seconds

    def estimates(self, track: MusdbTrack, sources: Sequence[str],
                  references: dict[str, AudioInfo]) -> dict[str, torch.Tensor]:
        out = {}
        for source in sources:
            path = self.folder / track.name / f"{source}.wav"
            ref = references[source]
            if not path.exists():
                raise EvaluationError(f"track {track.name!r}: estimate {path} is missing")
            info = probe(path)
            if info.sample_rate != ref.sample_rate:
                raise EvaluationError(
                    f"track {track.name!r}: estimate {path} is at {info.sample_rate} Hz, the "
                    f"reference at {ref.sample_rate} Hz; resample the estimate first")
            if info.channels != ref.channels:
                raise EvaluationError(
                    f"track {track.name!r}: estimate {path} has {info.channels} channel(s), the "
                    f"reference {ref.channels}")
            if abs(info.frames - ref.frames) > self.max_mismatch_seconds * ref.sample_rate:
                raise EvaluationError(
                    f"track {track.name!r}: estimate {path} has {info.frames} samples, the "
                    f"reference {ref.frames} ({(info.frames - ref.frames) / ref.sample_rate:+.3f} "
                    "s); is it the estimate of this track?")
            out[source] = read_audio(path)[0]
        return out

class SeparatorEstimator:
    """Separate the track's ``mixture.wav`` in memory with a :class:`Separator`.

    The separator object is duck-typed (``sources``, ``sample_rate``, ``num_channels``,
    ``separate``) so that this module does not import the inference stack.
    """

    def __init__(self, separator: object) -> None:
        self.separator = separator

    def estimates(self, track: MusdbTrack, sources: Sequence[str],
                  references: dict[str, AudioInfo]) -> dict[str, torch.Tensor]:
        sep = self.separator
        mixture_path = track.stem_path("mixture")
        if not mixture_path.exists():
            raise EvaluationError(f"track {track.name!r}: mixture {mixture_path} is missing")
        mixture, rate = read_audio(mixture_path)
        if rate != sep.sample_rate:  # type: ignore[attr-defined]
            raise EvaluationError(f"track {track.name!r}: {mixture_path} is at {rate} Hz, the "
                                  f"model at {sep.sample_rate} Hz")  # type: ignore[attr-defined]
        channels = mixture.shape[0]
        want = sep.num_channels  # type: ignore[attr-defined]
        if channels != want:
            mixture = mixture.expand(want, -1) if channels == 1 else mixture.mean(0, keepdim=True)
        separated = sep.separate(mixture[None])[0]  # type: ignore[attr-defined]
        out = {}
        for source in sources:
            stem = separated[list(sep.sources).index(source)]  # type: ignore[attr-defined]
            if stem.shape[0] != channels:
                stem = stem.mean(0, keepdim=True) if channels == 1 else stem.expand(channels, -1)
            out[source] = stem
        return out

# -- scoring -----------------------------------------------------------------------------------

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
    try:
        import museval  # noqa: PLC0415 - optional, slow to import, needs ffmpeg through musdb
    except (ImportError, RuntimeError) as exc:
        raise EvaluationError(f"--backend museval needs the museval package and ffmpeg on PATH "
                              f"({exc}); pip install museval, or use --backend fast") from exc
    ref = references.double().permute(0, 2, 1).numpy()
    est = estimates.double().permute(0, 2, 1).numpy()
    sdr, isr, sir, sar = museval.evaluate(ref, est, win=window, hop=hop, mode="v4")
    return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}

def quantise(value: float) -> float:
    """museval's ``TrackStore._q``: 5 decimals (exact decimal rounding), infinities as NaN."""
    if not np.isfinite(value):
        return float("nan")
    return float(Decimal(value).quantize(Decimal(".00001")))

def frame_table(scores: dict[str, np.ndarray], sources: Sequence[str]) -> FrameTable:
    return {src: {m: [quantise(float(v)) for v in scores[m][i]] for m in METRICS}
            for i, src in enumerate(sources)}

def museval_json(frames: FrameTable, config: EvalConfig) -> str:
    """The per-track JSON in museval's ``TrackStore`` format."""
    targets = []
    for source, metrics in frames.items():
        count = len(metrics["SDR"])
        targets.append({"name": source, "frames": [
            {"time": i * config.hop_seconds, "duration": config.window_seconds,
             "metrics": {m: metrics[m][i] for m in ("SDR", "SIR", "SAR", "ISR")}}
            for i in range(count)]})
    return json.dumps({"targets": targets, "museval_version": MUSEVAL_FORMAT_VERSION}, indent=2)

def read_museval_json(path: Path) -> FrameTable:
    """Frame scores back from a museval JSON (cumx's or museval's own)."""
    try:
        data = json.loads(path.read_text())
        return {t["name"]: {m: [float(f["metrics"][m]) for f in t["frames"]] for m in METRICS}
                for t in data["targets"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{path}: not a readable museval score file ({exc}); delete it "
                              "or rerun with --force") from exc

def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write the scores ({exc.strerror or exc})") from exc

def json_path(out_dir: Path, track: MusdbTrack) -> Path:
    return out_dir / track.subset / f"{track.name}.json"

def evaluate_track(track: MusdbTrack, sources: Sequence[str], estimator: Estimator,
                   config: EvalConfig, device: torch.device | None = None) -> FrameTable:
    """Score one track's estimates; the frame table of the JSON."""
    infos = _reference_infos(track, sources)
    rates = {info.sample_rate for info in infos.values()}
    lengths = {info.frames for info in infos.values()}
    if len(rates) > 1 or len(lengths) > 1:
        raise EvaluationError(f"track {track.name!r}: the reference stems differ in sample rate "
                              "or length; the dataset folder is inconsistent")
    rate, length = rates.pop(), lengths.pop()
    estimates = estimator.estimates(track, sources, infos)
    refs = torch.stack([read_audio(infos[s].path)[0] for s in sources])
    ests = torch.stack([match_length(estimates[s].float().cpu(), length) for s in sources])
    try:
        scores = score(refs, ests, rate, config, device)
    except SilentSourceError as exc:
        what = infos[sources[exc.index]].path if exc.kind == "reference" else \
            f"the estimate of {sources[exc.index]}"
        raise EvaluationError(f"track {track.name!r}: {what} is silent over the whole track; "
                              "BSSEval (and museval) cannot score it") from exc
    except ValueError as exc:  # museval's own input validation
        raise EvaluationError(f"track {track.name!r}: museval refused the input ({exc})") from exc
    return frame_table(scores, sources)

def evaluate_tracks(tracks: Sequence[MusdbTrack], sources: Sequence[str], estimator: Estimator,
                    out_dir: Path, config: EvalConfig, *, force: bool = False,
                    device: torch.device | None = None,
                    events: Events | None = None) -> list[TrackResult]:
    """Score every track, writing ``out_dir/<subset>/<track>.json``; one failure stops nothing.

    A track whose JSON exists is read back instead of scored, unless ``force``.
    """
    if len(sources) < 2:
        raise EvaluationError(f"BSSEval scores two or more sources jointly, got {list(sources)}")
    events = events or Events()
    results = []
    for track in tracks:
        path = json_path(out_dir, track)
        events.track_started(track)
        started = time.perf_counter()
        try:
            if path.exists() and not force:
                result = TrackResult(track.name, "skipped", read_museval_json(path), path)
            else:
                frames = evaluate_track(track, sources, estimator, config, device)
                write_atomic(path, museval_json(frames, config))
                result = TrackResult(track.name, "scored", frames, path)
        except CumxError as exc:
            result = TrackResult(track.name, "error", error=str(exc))
        result.seconds = time.perf_counter() - started
        events.track_finished(result)
        results.append(result)
    return results

def resolve_eval_device(name: str) -> torch.device:
    """``auto``: CUDA when there is one, else the CPU (MPS has no float64, which BSSEval needs)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from cumx_cli.engine.inference.separator import resolve_device

    device = resolve_device(name)
    if device.type == "mps":
        raise ConfigError("BSSEval needs float64, which MPS lacks; use --device cpu")
    return device
