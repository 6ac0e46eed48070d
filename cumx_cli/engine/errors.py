"""Typed errors raised by the engine.

Every message names the offending value and, where there is one, the fix. The command-line layer
turns these into a one-line message and exit code 1; nothing in the engine prints or exits.
"""

from __future__ import annotations


class CumxError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(CumxError, ValueError):
    """An option or configuration value is invalid.

    ``field`` names the configuration field at fault (``num_layers``), when there is one, and the
    message then starts with that name: the command line shows its own flag in its place
    (``--nb-layers``), since the engine does not know how its callers spell their options.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ShapeError(CumxError, ValueError):
    """A tensor does not have the documented layout."""


class AudioIOError(CumxError):
    """An audio file cannot be read or written."""


class CheckpointError(CumxError):
    """A model file cannot be recognised or loaded."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need arbitrary code to load (a pickle with foreign globals)."""


class DatasetError(CumxError):
    """A training or evaluation dataset is missing, malformed or unsuitable."""


class MissingDependencyError(CheckpointError):
    """An optional package is needed for this file (e.g. h5py for NNabla weights)."""


class WeightsError(CheckpointError):
    """A published model's weights cannot be found, downloaded or verified."""


class UnknownWeightsError(WeightsError, ConfigError):
    """The name is not in the registry of published models.

    Also a :class:`ConfigError`: a name that does not exist is a bad option value (the command
    line exits 2 for it, as for any usage error), not a failed download.
    """


class WeightsNotCachedError(WeightsError):
    """Offline, and the model is not in the cache."""


class DownloadError(WeightsError):
    """A download failed (HTTP error, dropped connection, timeout, full disk)."""


class NetworkUnreachableError(DownloadError):
    """The host cannot be reached at all (no route, DNS failure, connect timeout)."""


class ChecksumMismatchError(WeightsError):
    """A downloaded or cached file does not have the published size or checksum."""


class EvaluationError(CumxError):
    """Scoring cannot proceed: a missing or mismatched estimate, or an unusable dataset."""


class TrainingError(CumxError):
    """Training cannot go on: the loss became NaN or infinite."""
