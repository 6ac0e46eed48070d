"""``cumx train``: train X-UMX (or an ablation of it) on MUSDB18 / MUSDB18-HQ."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cumx_cli.console import State, guard, info_line, setup_logging, stderr
from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.errors import ConfigError

if TYPE_CHECKING:
    from cumx_cli.engine.training.loop import EpochResult

_T = TrainConfig()


class _Display:
    """Training progress on stderr: a live bar on terminals, one line per epoch otherwise."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.progress: Progress | None = None
        if stderr.is_terminal and not State.quiet:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TextColumn("loss {task.fields[loss]:.4g}  {task.fields[rate]:.1f} samples/s"),
                TimeRemainingColumn(), console=stderr, transient=True)
        self.task: int | None = None
        self.samples, self.started = 0, time.perf_counter()

    def message(self, text: str) -> None:
        info_line(text)

    def stats_progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task("input statistics", total=total, loss=float("nan"),
                                                   rate=0.0)
            self.progress.update(self.task, completed=done)
        if done == total:
            info_line(f"input statistics: {total} tracks")

    def epoch_started(self, epoch: int, steps: int) -> None:
        self.samples, self.started = 0, time.perf_counter()
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {epoch}/{self.epochs}", total=steps,
                                               loss=float("nan"), rate=0.0)

    def step_done(self, loss: float, samples: int) -> None:
        self.samples += samples
        if self.progress is not None and self.task is not None:
            rate = self.samples / max(1e-9, time.perf_counter() - self.started)
            self.progress.update(self.task, advance=1, loss=loss, rate=rate)

    def epoch_finished(self, result: EpochResult) -> None:
        sdr = " ".join(f"{k} {v:.2f}" for k, v in result.valid_sdr.items())
        info_line(f"epoch {result.epoch}: train {result.train_loss:.4g}, valid {result.valid_loss:.4g}"
                  f"{' (best)' if result.best else ''}, SDR {sdr} dB, lr {result.lr:.2g}, "
                  f"{result.seconds:.0f} s")


@guard
def train_command(
    musdb: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--musdb", help="MUSDB18 (.stem.mp4) or MUSDB18-HQ (wav) root with train/ and test/.",
        show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--out", help="Run folder: last.pt, best.pt, config.json, metrics.jsonl, curves.png.",
        show_default="runs/<date-time>")] = None,
    resume: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--resume", help="Continue the run in this folder exactly where it stopped.",
        show_default=False)] = None,
    synthetic_data: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--synthetic-data", help="Write a small synthetic MUSDB-HQ-layout dataset here (if "
        "absent) and train on it: try cumx without MUSDB.", show_default=False)] = None,
    sources: Annotated[str, typer.Option(
        help="Comma-separated sources to separate; each needs a <source>.wav per track.")] = ",".join(_T.sources),
    bridge: Annotated[bool, typer.Option("--bridge/--no-bridge", help="X-UMX's bridging (off: UMX).")] = _T.bridge,
    mdl: Annotated[bool, typer.Option("--mdl/--no-mdl", help="Multi-domain loss (adds alpha x wSDR).")] = _T.multidomain,
    cl: Annotated[bool, typer.Option("--cl/--no-cl", help="Combination loss over source subsets.")] = _T.combine,
    alpha: Annotated[float, typer.Option(help="Weight of the time-domain term.")] = _T.alpha,
    hidden_size: Annotated[int, typer.Option(help="Hidden size.")] = _T.hidden_size,
    nb_layers: Annotated[int, typer.Option(help="BLSTM layers.")] = _T.num_layers,
    seq_dur: Annotated[float, typer.Option(help="Training excerpt length in seconds.")] = _T.seq_seconds,
    samples_per_track: Annotated[int, typer.Option(help="Excerpts per track per epoch.")] = _T.samples_per_track,
    batch_size: Annotated[int, typer.Option(help="Batch size (per process).")] = _T.batch_size,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = _T.epochs,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _T.lr,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = _T.weight_decay,
    patience: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="Stop after this many epochs without improvement.", show_default="off")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = _T.seed,
    workers: Annotated[int, typer.Option(help="Data loading processes.", min=0)] = _T.workers,
    device: Annotated[str, typer.Option(envvar="CUMX_DEVICE", help="auto, cpu, cuda, cuda:N, mps.")] = _T.device,
    amp: Annotated[Optional[str], typer.Option(  # noqa: UP007
        help="Mixed precision on CUDA: bf16.", show_default="off")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Tracebacks and debug logs.")] = False,
) -> None:
    """Train X-UMX with the paper's recipe (MDL + CL + bridging); any Table 1 row by flags.

    Multi-GPU: torchrun --nproc-per-node N -m cumx_cli train ...
    """
    from cumx_cli.engine.training.loop import fit, load_run_config

    if verbose:
        setup_logging(True)
    if resume is not None:
        config = load_run_config(resume)
        if epochs != _T.epochs:
            config = TrainConfig.from_dict({**config.to_dict(), "epochs": epochs})
        out = resume
    else:
        config = TrainConfig(
            sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
            hidden_size=hidden_size, num_layers=nb_layers, bridge=bridge, multidomain=mdl,
            combine=cl, alpha=alpha, seq_seconds=seq_dur, samples_per_track=samples_per_track,
            batch_size=batch_size, epochs=epochs, lr=lr, weight_decay=weight_decay,
            patience=patience, seed=seed, workers=workers, device=device, amp=amp)
        out = out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    root = _data_root(musdb, synthetic_data, out)

    display = _Display(config.epochs)
    if display.progress is not None:
        with display.progress:
            fit(config, root, out, resume=resume is not None, cache_dir=_cache_root(), events=display)
    else:
        fit(config, root, out, resume=resume is not None, cache_dir=_cache_root(), events=display)
    info_line(f"done: {out / 'best.pt'} (cumx separate --model {out / 'best.pt'} ...)")


def _cache_root() -> Path:
    """Where the input statistics are cached: ``$CUMX_CACHE_DIR``, else the user cache folder."""
    env = os.environ.get("CUMX_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from cumx_cli.engine.weights.cache import default_cache_dir

    return default_cache_dir().parent


def _data_root(musdb: Path | None, synthetic: Path | None, out: Path) -> Path:
    if synthetic is not None:
        if musdb is not None:
            raise ConfigError("give --musdb or --synthetic-data, not both")
        if not (synthetic / "train").is_dir():
            from cumx_cli.engine.data.synth import generate_synthetic_musdb

            info_line(f"writing synthetic data to {synthetic}")
            generate_synthetic_musdb(synthetic)
        return synthetic
    if musdb is None:
        raise ConfigError("--musdb ROOT is required (or --synthetic-data DIR to try without MUSDB)")
    return musdb
