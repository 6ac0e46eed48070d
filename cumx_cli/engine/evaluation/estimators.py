"""Where the estimates to score come from: stems on disk, or a separator run on the mixture.

An :class:`Estimator` gives, for one track, a (channel, time) estimate per source at the
references' sample rate and channel count; the runner scores them. :class:`EstimatesFolder`
reads ``DIR/<track>/<source>.wav`` written by any tool and checks it against the reference;
:class:`SeparatorEstimator` separates the track's mixture (its ``mixture.wav``, or the
mixture stream of its ``.stem.mp4``) in memory.

Each estimator has a ``record``: what made its estimates (the estimates folder, or the model, the
sha256 of its files and the inference options), stored in every score file, so that a rerun
reuses a file only when the same thing made it (:mod:`~cumx_cli.engine.evaluation.runner`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from cumx_cli.engine.audio.channels import match_channels
from cumx_cli.engine.audio.io import AudioInfo, probe, read_audio
from cumx_cli.engine.config import InferenceConfig
from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.weights.integrity import file_sha256

#: What made a set of estimates, as JSON values (str, int, float, bool, None, dicts of them).
Record = dict[str, Any]

#: The ``InferenceConfig`` fields that change the stems a model gives (not speed or device).
SCORE_CHANGING_INFERENCE = ("niter", "softmask", "residual", "wiener_window", "chunk_seconds",
                            "overlap_seconds")


class Estimator(Protocol):
    """Gives the estimates of a track's sources; ``record`` says what made them."""

    record: Record

    def estimates(self, track: TrackFolder, sources: Sequence[str],
                  references: dict[str, AudioInfo],
                  loaded: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Estimates (channel, time) float at the references' rate, one per source.

        ``loaded``: the references' samples where the caller has read them already (as
        ``track.read`` gives them), so that nothing is decoded twice.
        """


class Separates(Protocol):
    """What :class:`SeparatorEstimator` needs of a separator (``inference.Separator`` has it;
    a protocol, so that evaluation does not import the inference stack)."""

    @property
    def sources(self) -> tuple[str, ...]: ...

    @property
    def num_channels(self) -> int: ...

    sample_rate: int

    def separate(self, waveform: torch.Tensor) -> torch.Tensor:
        """(batch, channel, time) -> (batch, source, channel, time)."""


class EstimatesFolder:
    """Stems on disk: ``folder/<track>/<source>.wav``.

    Args:
        folder: the folder of track folders.
        max_mismatch_seconds: how much shorter or longer than its reference an estimate may be
            (``EvalConfig.max_length_mismatch_seconds``).
    """

    #: Its estimates are read from disk: the runner reads the next track ahead on a thread.
    reads_files = True

    def __init__(self, folder: Path, max_mismatch_seconds: float) -> None:
        self.folder = folder
        self.max_mismatch_seconds = max_mismatch_seconds
        self.record: Record = {"estimates": str(Path(folder).resolve())}

    def estimates(self, track: TrackFolder, sources: Sequence[str],
                  references: dict[str, AudioInfo],
                  loaded: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        out = {}
        for source in sources:
            path = self.folder / track.name / f"{source}.wav"
            if not path.exists():
                raise EvaluationError(f"track {track.name!r}: estimate {path} is missing")
            self._check(track, path, probe(path), references[source])
            out[source] = read_audio(path)[0]
            self._check_not_the_reference(track, source, path, out[source], references[source],
                                          None if loaded is None else loaded.get(source))
        return out

    @staticmethod
    def _check_not_the_reference(track: TrackFolder, source: str, path: Path,
                                 estimate: torch.Tensor, ref: AudioInfo,
                                 samples: torch.Tensor | None) -> None:
        # a copied reference, or one separated as an input into the same name, scores far too
        # well and would be trusted; an honest estimate is never equal sample for sample
        if estimate.shape[-1] != ref.frames:
            return
        if torch.equal(estimate, track.read(source, ref) if samples is None else samples):
            raise EvaluationError(
                f"track {track.name!r}: estimate {path} is identical to the reference "
                f"{track.describe(source)}; it is a copy of the reference, not an estimate "
                "(separate only the mixtures)")

    def _check(self, track: TrackFolder, path: Path, info: AudioInfo, ref: AudioInfo) -> None:
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


class SeparatorEstimator:
    """Separate the track's mixture in memory with a separator (read as the references are:
    :meth:`~cumx_cli.engine.data.musdb.TrackFolder.read`).

    A mixture whose channel count differs from the model's is up- or down-mixed for the model,
    and the stems are mixed back to the mixture's channel count.
    """

    def __init__(self, separator: Separates, record: Record | None = None) -> None:
        self.separator = separator
        self.record: Record = record if record is not None else {}

    def estimates(self, track: TrackFolder, sources: Sequence[str],
                  references: dict[str, AudioInfo],
                  loaded: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        sep = self.separator
        mixture_path = track.stem_path("mixture")
        if not mixture_path.exists():
            raise EvaluationError(f"track {track.name!r}: mixture {mixture_path} is missing")
        info = track.probe("mixture")
        if info.sample_rate != sep.sample_rate:
            raise EvaluationError(f"track {track.name!r}: {track.describe('mixture')} is at "
                                  f"{info.sample_rate} Hz, the model at {sep.sample_rate} Hz")
        mixture = track.read("mixture", info)
        channels = mixture.shape[0]
        separated = sep.separate(match_channels(mixture, sep.num_channels)[None])[0]
        return {source: match_channels(separated[list(sep.sources).index(source)], channels)
                for source in sources}


def model_files(path: Path) -> list[Path]:
    """The files a model is read from: the file itself, or an Open-Unmix folder's ``.pth`` files."""
    path = Path(path)
    return sorted(path.glob("*.pth")) if path.is_dir() else [path]


def model_record(spec: str, files: Sequence[Path], inference: InferenceConfig) -> Record:
    """The record of a model's estimates: what was typed, the sha256 of each of its files (those
    that exist), and the inference options that change the stems."""
    return {"model": spec,
            "sha256": {Path(f).name: file_sha256(Path(f)) for f in files if Path(f).is_file()},
            "inference": {name: getattr(inference, name) for name in SCORE_CHANGING_INFERENCE}}
