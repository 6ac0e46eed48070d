"""cumx's own checkpoint format (``.pt``), for models and for training runs.

A file is a dict ``{"format": "cumx", "format_version", "cumx_version", "model_config",
"state_dict"}``: self-describing (the config is stored as plain data, no classes) and written
atomically. A training checkpoint (``last.pt`` and ``best.pt`` of a run) is the same file with
two more keys, ``train_config`` and ``training`` (epoch counters, history, optimizer, scheduler
and RNG state), so it is also a model ``cumx separate`` can use. Both are read through the same
format version check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.errors import CheckpointError
from cumx_cli.engine.files import disk_full_reason, replacing
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.common import first_line, load_strict, read_torch_file

FORMAT_NAME = "cumx"
FORMAT_VERSION = 1


def is_cumx(data: Any) -> bool:
    """Whether loaded checkpoint data is in cumx's format (of any version)."""
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def _check_version(data: dict[str, Any], path: Path) -> None:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: cumx checkpoint format version {version} is not supported "
                              f"(this cumx reads version {FORMAT_VERSION}); upgrade cumx")


def save_model(model: CrossUMX, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write a self-describing cumx checkpoint atomically (temp file, then rename).

    Args:
        model: the model; its config and (CPU copies of its) tensors are stored.
        path: the file to write; its folder is created.
        extra: more top-level keys (training state, for instance).

    Raises:
        CheckpointError: the file cannot be written (names a full disk).
    """
    from cumx_cli import __version__

    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "cumx_version": __version__,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload.update(extra or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(path) as tmp:
            try:
                torch.save(payload, tmp)
            except RuntimeError as exc:  # how torch's zip writer reports a failed write
                full = disk_full_reason(tmp)  # while the partial file still fills the disk
                if full:
                    raise CheckpointError(f"{path}: cannot write the checkpoint ({full})") from exc
                raise CheckpointError(f"{path}: cannot write the checkpoint ({first_line(exc)}); "
                                      "is the disk full?") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from exc


def model_from_data(data: dict[str, Any], path: Path) -> CrossUMX:
    """The model in loaded cumx checkpoint data (``path`` is for messages).

    Raises:
        CheckpointError: another format version, or weights that do not fit the stored config.
    """
    _check_version(data, path)
    return load_strict(ModelConfig.from_dict(data["model_config"]), data["state_dict"], path)


def save_training_checkpoint(model: CrossUMX, path: Path, train_config: dict[str, Any],
                             training: dict[str, Any]) -> None:
    """Write a run's checkpoint: the model as :func:`save_model` writes it, plus the run's
    ``train_config`` (``TrainConfig.to_dict()``) and ``training`` state, atomically.

    Raises:
        CheckpointError: the file cannot be written.
    """
    save_model(model, path, extra={"train_config": train_config, "training": training})


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a run's checkpoint written by :func:`save_training_checkpoint` (for ``--resume``).

    Returns:
        The stored dict: ``state_dict``, ``model_config``, ``train_config``, ``training``, ...

    Raises:
        CheckpointError: damaged, not a training checkpoint, or another format version (the
            message names both versions).
        UnsafeCheckpointError: the file would need arbitrary code to unpickle.
    """
    path = Path(path)
    data = read_torch_file(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a cumx training checkpoint (no train_config)")
    for key in ("train_config", "training"):
        if key not in data:
            raise CheckpointError(f"{path}: not a cumx training checkpoint (no {key})")
    _check_version(data, path)
    return data
