"""Where the estimates to score come from: stems on disk, or a separator run on the mixture.

An :class:`Estimator` gives, for one track, a (channel, time) estimate per source at the
references' sample rate and channel count; the runner scores them. :class:`EstimatesFolder`
reads ``DIR/<track>/<source>.wav`` written by any tool and checks it against the reference;
:class:`SeparatorEstimator` separates the track's ``mixture.wav`` in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from cumx_cli.engine.audio.io import AudioInfo, probe, read_audio
from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import EvaluationError


class Estimator(Protocol):
    """Gives the estimates of a track's sources."""

    def estimates(self, track: TrackFolder, sources: Sequence[str],
                  references: dict[str, AudioInfo]) -> dict[str, torch.Tensor]:
        """Estimates (channel, time) float at the references' rate, one per source."""


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

    def __init__(self, folder: Path, max_mismatch_seconds: float) -> None:
        self.folder = folder
        self.max_mismatch_seconds = max_mismatch_seconds

    def estimates(self, track: TrackFolder, sources: Sequence[str],
                  references: dict[str, AudioInfo]) -> dict[str, torch.Tensor]:
        out = {}
        for source in sources:
            path = self.folder / track.name / f"{source}.wav"
            if not path.exists():
                raise EvaluationError(f"track {track.name!r}: estimate {path} is missing")
            self._check(track, path, probe(path), references[source])
            out[source] = read_audio(path)[0]
        return out

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
    """Separate the track's ``mixture.wav`` in memory with a separator.

    A mixture whose channel count differs from the model's is up- or down-mixed for the model,
    and the stems are mixed back to the mixture's channel count.
    """

    def __init__(self, separator: Separates) -> None:
        self.separator = separator

    def estimates(self, track: TrackFolder, sources: Sequence[str],
                  references: dict[str, AudioInfo]) -> dict[str, torch.Tensor]:
        sep = self.separator
        mixture_path = track.stem_path("mixture")
        if not mixture_path.exists():
            raise EvaluationError(f"track {track.name!r}: mixture {mixture_path} is missing")
        mixture, rate = read_audio(mixture_path)
        if rate != sep.sample_rate:
            raise EvaluationError(f"track {track.name!r}: {mixture_path} is at {rate} Hz, the "
                                  f"model at {sep.sample_rate} Hz")
        channels, want = mixture.shape[0], sep.num_channels
        if channels != want:
            mixture = mixture.expand(want, -1) if channels == 1 else mixture.mean(0, keepdim=True)
        separated = sep.separate(mixture[None])[0]
        out = {}
        for source in sources:
            stem = separated[list(sep.sources).index(source)]
            if stem.shape[0] != channels:
                stem = stem.mean(0, keepdim=True) if channels == 1 else stem.expand(channels, -1)
            out[source] = stem
        return out
