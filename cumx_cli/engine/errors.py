"""Typed errors raised by the engine.

Every message names the offending value and, where there is one, the fix. The command-line layer
turns these into a one-line message and exit code 1; nothing in the engine prints or exits.
"""

from __future__ import annotations


class CumxError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(CumxError, ValueError):
    """An option or configuration value is invalid."""


class ShapeError(CumxError, ValueError):
    """A tensor does not have the documented layout."""


class AudioIOError(CumxError):
    """An audio file cannot be read or written."""


class CheckpointError(CumxError):
    """A model file cannot be recognised or loaded."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would need arbitrary code to load (a pickle with foreign globals)."""


class EvaluationError(CumxError):
    """Scoring cannot proceed: a missing or mismatched estimate, or an unusable dataset."""
