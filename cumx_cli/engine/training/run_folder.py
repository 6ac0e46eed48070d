"""A training run's folder: its config, metrics, curves and checkpoints.

Rank 0 writes, in the run folder: ``config.json`` when the run starts (the training config plus
``data_root``, the resolved data folder, so that ``--resume`` finds the data, and for a run
that started from a trained model, ``init_from``: that model and how its sources were mapped,
kept when the run is resumed); after every epoch
``last.pt`` and, when the validation loss improved, ``best.pt`` (cumx's training checkpoint
format, directly usable by ``cumx separate``), ``metrics.jsonl`` (one line per epoch) and
``curves.png``. Every file is written through a temporary file renamed into place, so a failed
or killed write leaves the previous version, never half a file; a folder that cannot be written
is one :class:`CheckpointError` that names it.

``last.pt`` holds the :class:`RunState`, the optimizer, the scheduler and the RNG state: with
the examples of an epoch depending only on ``(seed, epoch, rank, index)``, a run stopped after
epoch k and resumed produces the same epochs as one that never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.errors import CheckpointError, ConfigError
from cumx_cli.engine.files import replacing
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.training.distributed import unwrap
from cumx_cli.engine.weights.formats.cumx import load_training_checkpoint, save_training_checkpoint

#: Files a run writes before its first checkpoint (removed again if it fails before one).
_EARLY_FILES = ("config.json", "metrics.jsonl", "curves.png")
#: The key of ``config.json`` that records the run's data folder (runs of older cumx lack it).
DATA_ROOT_KEY = "data_root"
#: The key of ``config.json`` that records what a fine-tuned run started from.
INIT_KEY = "init_from"


@dataclass
class RunState:
    """Where a run stands after its last epoch (saved in every checkpoint).

    ``history`` holds one ``EpochResult.to_dict()`` per epoch: the lines of ``metrics.jsonl``.
    """

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, epoch: int, valid_loss: float) -> bool:
        """Count epoch ``epoch`` done with ``valid_loss``; whether it is the best so far."""
        best = valid_loss < self.best_loss
        self.epoch = epoch
        if best:
            self.best_loss, self.best_epoch, self.bad_epochs = valid_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return best


def load_run_config(run: Path) -> TrainConfig:
    """The training config stored in ``RUNDIR/last.pt`` (for ``--resume``).

    Checkpoints of older cumx versions, with the flat config, are read too.
    """
    last = Path(run) / "last.pt"
    if not last.is_file():
        raise CheckpointError(f"{run}: no last.pt to resume from; start a run with --out {run}")
    return TrainConfig.from_dict(load_training_checkpoint(last)["train_config"])


def recorded_data_root(run: Path) -> Path | None:
    """The data folder recorded in ``RUNDIR/config.json``; None for a run of an older cumx.

    Raises:
        CheckpointError: ``config.json`` exists but is not a JSON object with a string there.
    """
    path = Path(run) / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the run's config ({exc})") from exc
    root = data.get(DATA_ROOT_KEY) if isinstance(data, dict) else None
    if root is not None and not isinstance(root, str):
        raise CheckpointError(f"{path}: {DATA_ROOT_KEY!r} must be a folder path, got {root!r}")
    return None if root is None else Path(root)


def recorded_init(run: Path) -> dict[str, Any] | None:
    """The ``init_from`` record of ``RUNDIR/config.json``; None for a run from random weights,
    a run folder without ``config.json``, or one that cannot be read (:func:`recorded_data_root`
    reports those)."""
    path = Path(run) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    found = data.get(INIT_KEY) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else None


class RunFolder:
    """The folder of one run, as rank 0 writes it and ``--resume`` reads it back."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.created = False

    def check(self, resume: bool) -> None:
        """Refuse to resume a folder without a run, or to start one over an existing run."""
        if resume and not self.last.is_file():
            raise CheckpointError(f"{self.path}: no last.pt to resume from")
        if not resume and self.last.is_file():
            raise ConfigError(f"{self.path} already holds a run; use --resume {self.path} or "
                              "another --out")

    def start(self, config: TrainConfig, data_root: Path,
              init: dict[str, Any] | None = None) -> None:
        """Create the folder (if needed) and write ``config.json``: ``config``, the resolved
        ``data_root`` and ``init``, the record of the model the run started from (None when
        resuming: the record already there is kept)."""
        self.created = not self.path.exists()
        record: dict[str, Any] = {**config.to_dict(), DATA_ROOT_KEY: str(Path(data_root).resolve())}
        if init is None and config.init is not None:
            init = recorded_init(self.path)
        if init is not None:
            record[INIT_KEY] = init
        with self._writing():
            self.path.mkdir(parents=True, exist_ok=True)
            _write_text(self.path / "config.json", json.dumps(record, indent=2) + "\n")

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: Any) -> RunState:
        """Load ``last.pt`` into the model, optimizer, scheduler and torch's RNG; its state."""
        data = load_training_checkpoint(self.last)
        model.load_state_dict(data["state_dict"])
        t = data["training"]
        optimizer.load_state_dict(t["optimizer"])
        scheduler.load_state_dict(t["scheduler"])
        torch.set_rng_state(t["rng"])
        return RunState(t["epoch"], t["best_loss"], t["best_epoch"], t["bad_epochs"],
                        list(t["history"]))

    def save_epoch(self, model: torch.nn.Module, config: TrainConfig, state: RunState,
                   optimizer: torch.optim.Optimizer, scheduler: Any, best: bool) -> None:
        """Write the checkpoints, ``metrics.jsonl`` and ``curves.png`` after an epoch."""
        with self._writing():
            _save(self.last, model, config, state, optimizer, scheduler)
            if best:
                _save(self.best, model, config, state, optimizer, scheduler)
            # Rewritten whole from the history (atomically), never appended to: a failed or
            # killed write cannot leave a partial line.
            _write_text(self.path / "metrics.jsonl",
                        "".join(json.dumps(h) + "\n" for h in state.history))
            _plot(self.path / "curves.png", state.history)

    def discard_if_unstarted(self) -> None:
        """After a failure: remove the folder :meth:`start` created if no checkpoint is in it.

        Only the files written before a checkpoint are removed, and the folder only if that
        leaves it empty (the user's own files stay).
        """
        if not self.created or self.last.exists():
            return
        for name in _EARLY_FILES:
            (self.path / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A run folder that cannot be written (read-only, not a folder, a full disk): one error
        that names it, not an OSError."""
        try:
            yield
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot write the run folder "
                                  f"({exc.strerror or exc})") from exc


def _save(path: Path, model: torch.nn.Module, config: TrainConfig, state: RunState,
          optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    net = unwrap(model)
    assert isinstance(net, CrossUMX)
    save_training_checkpoint(net, path, config.to_dict(), {
        "epoch": state.epoch, "best_loss": state.best_loss, "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs, "history": state.history,
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    })


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file renamed into place: never a half-written file."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def _plot(path: Path, history: list[dict[str, Any]]) -> None:
    """Write the loss and validation SDR curves (atomically)."""
    import matplotlib  # noqa: PLC0415 - only needed here

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["valid_loss"] for h in history], label="valid")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for source in history[-1]["valid_sdr"]:
        ax2.plot(epochs, [h["valid_sdr"][source] for h in history], label=source)
    ax2.plot(epochs, [h["valid_sdr_mean"] for h in history], "k--", label="mean")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("valid SDR (dB)")
    ax2.legend(fontsize="small")
    fig.tight_layout()
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
