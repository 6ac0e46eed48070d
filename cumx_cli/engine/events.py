"""Progress event interfaces between the engine and its callers, and their silent defaults.

Each long-running engine function takes an optional ``events`` object and calls its hooks as
work proceeds; the engine never prints. The interfaces are :class:`typing.Protocol`\\ s, so a
caller (the CLI's progress bars, a notebook, a test) implements them without inheriting from
anything, and a type checker still verifies its methods. This module imports neither torch nor
the modules that define the payloads (those are imported for type checking only), so the CLI
can name these interfaces without loading the engine.

Protocols with a do-nothing implementation each, used when no ``events`` is given:

- :class:`SeparateEvents` / :class:`NoSeparateEvents`: ``separate_files``, per input file;
- :class:`DownloadEvents` / :class:`NoDownloadEvents`: weights downloads, per file;
- :class:`TrainEvents` / :class:`NoTrainEvents`: training, per epoch and step;
- :class:`EvalEvents` / :class:`NoEvalEvents`: evaluation, per track.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cumx_cli.engine.data.musdb import TrackFolder
    from cumx_cli.engine.evaluation.runner import TrackResult as EvalTrackResult
    from cumx_cli.engine.inference.pipeline import TrackResult
    from cumx_cli.engine.training.loop import EpochResult
    from cumx_cli.engine.weights.download import FileResult
    from cumx_cli.engine.weights.registry import WeightsSpec


class SeparateEvents(Protocol):
    """Progress of :func:`cumx_cli.engine.inference.pipeline.separate_files`."""

    def track_started(self, path: Path, num_chunks: int) -> None:
        """Input ``path`` is open and will be separated in ``num_chunks`` chunks."""

    def chunk_done(self, path: Path) -> None:
        """One more chunk of ``path`` is separated."""

    def track_finished(self, result: TrackResult) -> None:
        """An input is done: written, skipped or failed (once per input, in completion order)."""

    def track_warning(self, path: Path, message: str) -> None:
        """Something about input ``path`` that the user should know; it is separated anyway
        (``message`` names the file: "song.mkv: 6-channel audio downmixed to stereo")."""


class NoSeparateEvents:
    """:class:`SeparateEvents` that ignores everything."""

    def track_started(self, path: Path, num_chunks: int) -> None:
        pass

    def chunk_done(self, path: Path) -> None:
        pass

    def track_finished(self, result: TrackResult) -> None:
        pass

    def track_warning(self, path: Path, message: str) -> None:
        pass


class DownloadEvents(Protocol):
    """Progress of a weights download (:mod:`cumx_cli.engine.weights.download`)."""

    def model_started(self, spec: WeightsSpec, origin: str, dest: Path, total: int | None) -> None:
        """Files of ``spec`` are about to be fetched from ``origin`` into ``dest``; ``total`` is
        their published size in bytes when known."""

    def file_started(self, file: str, total: int | None, done: int) -> None:
        """A transfer starts (``done`` > 0 when resuming)."""

    def file_progress(self, file: str, done: int) -> None:
        """``done`` bytes of ``file`` are on disk."""

    def file_finished(self, file: str, result: FileResult) -> None:
        """``file`` is verified and in the cache."""


class NoDownloadEvents:
    """:class:`DownloadEvents` that ignores everything."""

    def model_started(self, spec: WeightsSpec, origin: str, dest: Path, total: int | None) -> None:
        pass

    def file_started(self, file: str, total: int | None, done: int) -> None:
        pass

    def file_progress(self, file: str, done: int) -> None:
        pass

    def file_finished(self, file: str, result: FileResult) -> None:
        pass


class TrainEvents(Protocol):
    """Progress of training (:func:`cumx_cli.engine.training.loop.fit`)."""

    def message(self, text: str) -> None:
        """A one-line note for the user (data found, resuming, early stop)."""

    def stats_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` tracks went into the input statistics."""

    def epoch_started(self, epoch: int, steps: int) -> None:
        """Epoch ``epoch`` (from 1) starts and will take ``steps`` optimiser steps."""

    def step_done(self, loss: float, samples: int) -> None:
        """One optimiser step on ``samples`` examples, with its training loss."""

    def epoch_finished(self, result: EpochResult) -> None:
        """An epoch is trained, validated and saved."""


class NoTrainEvents:
    """:class:`TrainEvents` that ignores everything."""

    def message(self, text: str) -> None:
        pass

    def stats_progress(self, done: int, total: int) -> None:
        pass

    def epoch_started(self, epoch: int, steps: int) -> None:
        pass

    def step_done(self, loss: float, samples: int) -> None:
        pass

    def epoch_finished(self, result: EpochResult) -> None:
        pass


class EvalEvents(Protocol):
    """Progress of evaluation (:func:`cumx_cli.engine.evaluation.runner.evaluate_tracks`)."""

    def track_started(self, track: TrackFolder) -> None:
        """``track`` is about to be separated or read, and scored."""

    def track_scoring(self, track: TrackFolder) -> None:
        """``track``'s references and estimates are in memory (read, or separated): its BSSEval
        starts now. Not called for a track that is skipped or fails before."""

    def track_finished(self, result: EvalTrackResult) -> None:
        """A track is scored, skipped or failed."""

    def track_warning(self, track: TrackFolder, message: str) -> None:
        """Something about ``track``'s estimates the user should know; its scores stand as
        computed (``message`` names the track: "track 'X': the estimates lag the references by
        1024 samples ..."). Called before :meth:`track_finished`, also for a track whose score
        file recorded it and is reused."""


class NoEvalEvents:
    """:class:`EvalEvents` that ignores everything."""

    def track_started(self, track: TrackFolder) -> None:
        pass

    def track_scoring(self, track: TrackFolder) -> None:
        pass

    def track_finished(self, result: EvalTrackResult) -> None:
        pass

    def track_warning(self, track: TrackFolder, message: str) -> None:
        pass
