"""``cumx train``: train X-UMX (or an ablation of it) on MUSDB18 / MUSDB18-HQ or your own stems."""

from __future__ import annotations

import contextlib
import os
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cumx_cli.console import CliState, command_state, flag_names, guard, stderr
from cumx_cli.engine.config import DataConfig, ModelConfig, TrainConfig
from cumx_cli.engine.errors import ConfigError
from cumx_cli.options import CacheDir, Mirror, Offline, Verbose, cache_root

if TYPE_CHECKING:
    from rich.progress import TaskID

    from cumx_cli.engine.training.distributed import Launch
    from cumx_cli.engine.training.loop import EpochResult

_T = TrainConfig()
_D = _T.data


class Layout(str, Enum):
    """``--layout``: how ``ROOT/train`` holds the stems (``DataConfig.layout``)."""

    auto = "auto"
    tracks = "tracks"
    sources = "sources"

#: The flag of each ``TrainConfig`` (and ``ModelConfig``) field that ``train`` sets: the engine's
#: errors name the field, the user reads the flag.
FLAGS = {
    "sources": "--sources", "hidden_size": "--hidden-size", "num_layers": "--nb-layers",
    "bridge": "--bridge", "multidomain": "--mdl", "combine": "--cl", "alpha": "--alpha",
    "seq_seconds": "--seq-dur", "samples_per_track": "--samples-per-track",
    "batch_size": "--batch-size", "epochs": "--epochs", "lr": "--lr",
    "weight_decay": "--weight-decay", "patience": "--patience", "seed": "--seed",
    "workers": "--workers", "device": "--device", "amp": "--amp",
    "init": "--init", "recompute_stats": "--recompute-stats",
    "layout": "--layout", "silence_missing": "--silence-missing", "valid_share": "--valid-share",
    "gain_min": "--gain-min", "gain_max": "--gain-max", "channel_swap": "--channel-swap",
    "random_mix": "--random-mix", "polarity": "--polarity",
}


class _Display:
    """Training progress on stderr: a live bar on terminals, one line per epoch otherwise."""

    def __init__(self, epochs: int, state: CliState) -> None:
        self.epochs = epochs
        self.state = state
        self.progress: Progress | None = None
        if state.live:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TextColumn("loss {task.fields[loss]:.4g}  {task.fields[rate]:.1f} samples/s"),
                TimeRemainingColumn(), console=stderr, transient=True)
        self.task: TaskID | None = None
        self.samples, self.started = 0, time.perf_counter()

    def message(self, text: str) -> None:
        self.state.info(text)

    def stats_progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task("input statistics", total=total, loss=float("nan"),
                                                   rate=0.0)
            self.progress.update(self.task, completed=done)
        if done == total:
            self.state.info(f"input statistics: {total} tracks")

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
        self.state.info(f"epoch {result.epoch}: train {result.train_loss:.4g}, valid "
                        f"{result.valid_loss:.4g}{' (best)' if result.best else ''}, "
                        f"SDR {sdr} dB, lr {result.lr:.2g}, {result.seconds:.0f} s")


@guard
@flag_names(FLAGS)
def train_command(
    ctx: typer.Context,
    data_root: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--data", "--musdb", envvar="MUSDB_PATH", help="Data root holding train/ (and "
        "optionally valid/): MUSDB18 (.stem.mp4), MUSDB18-HQ, or your own stems (see "
        "--layout). --musdb is the same flag. MUSDB_PATH yields to --synthetic-data, and to "
        "the data a --resume run recorded.", show_default=False)] = None,
    layout: Annotated[Layout, typer.Option(
        help="tracks: train/<track>/<source>.<ext> (any audio format, mixture optional); "
        "sources: train/<source>/*.<ext>, unaligned files mixed at random; auto: sources "
        "when every source is a folder of train/, else tracks (.stem.mp4 files are always "
        "read as MUSDB18).")] = Layout(_D.layout),
    silence_missing: Annotated[bool, typer.Option(
        "--silence-missing", help="A stem a track lacks is silence (default: an error naming "
        "it).")] = _D.silence_missing,
    valid_share: Annotated[float, typer.Option(
        help="Share of the tracks held out for validation when no valid/ folder, split.json "
        "or musdb track names choose them.")] = _D.valid_share,
    gain_min: Annotated[float, typer.Option(help="Augmentation: lowest gain of a stem.")] = _D.gain_min,
    gain_max: Annotated[float, typer.Option(
        help="Augmentation: highest gain of a stem (both 1: no gain change).")] = _D.gain_max,
    channel_swap: Annotated[bool, typer.Option(
        "--channel-swap/--no-channel-swap", help="Augmentation: swap left and right with "
        "probability 0.5.")] = _D.channel_swap,
    random_mix: Annotated[bool, typer.Option(
        "--random-mix/--no-random-mix", help="Augmentation: each source from a random track "
        "(off: all sources of an example from one track and start).")] = _D.random_mix,
    polarity: Annotated[bool, typer.Option(
        "--polarity/--no-polarity", help="Augmentation: flip each stem's sign with probability "
        "0.5 (helps small data sets).")] = _D.polarity,
    out: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--out", help="Run folder: last.pt, best.pt, config.json, metrics.jsonl, curves.png.",
        show_default="runs/<date-time>")] = None,
    resume: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--resume", help="Continue the run in this folder exactly where it stopped, on the data it "
        "recorded.",
        show_default=False)] = None,
    init: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--init", metavar="MODEL", help="Fine-tune: start from this model (a published name, "
        "as for separate, or any checkpoint file or folder separate reads) instead of random "
        "weights. Its architecture is kept; --sources may keep, add or drop sources.",
        show_default=False)] = None,
    recompute_stats: Annotated[bool, typer.Option(
        "--recompute-stats", help="With --init: set the input scaling from this data's "
        "statistics (default: keep the model's).")] = False,
    synthetic_data: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--synthetic-data", help="Write a small synthetic MUSDB-HQ-layout dataset here (if "
        "absent) and train on it: try cumx without MUSDB.", show_default=False)] = None,
    sources: Annotated[str, typer.Option(
        help="Comma-separated sources to separate (2 to 8), each a stem name or a sum of "
        "stems: vocals,accompaniment=drums+bass+other.")] = ",".join(_T.model.sources),
    bridge: Annotated[bool, typer.Option("--bridge/--no-bridge", help="X-UMX's bridging (off: UMX).")] = _T.model.bridge,
    mdl: Annotated[bool, typer.Option("--mdl/--no-mdl", help="Multi-domain loss (adds alpha x wSDR).")] = _T.multidomain,
    cl: Annotated[bool, typer.Option("--cl/--no-cl", help="Combination loss over source subsets.")] = _T.combine,
    alpha: Annotated[float, typer.Option(help="Weight of the time-domain term.")] = _T.alpha,
    hidden_size: Annotated[int, typer.Option(help="Hidden size.")] = _T.model.hidden_size,
    nb_layers: Annotated[int, typer.Option(help="BLSTM layers.")] = _T.model.num_layers,
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
    cache_dir: CacheDir = None,
    offline: Offline = False,
    mirror: Mirror = None,
    verbose: Verbose = False,
) -> None:
    """Train X-UMX with the paper's recipe (MDL + CL + bridging); any Table 1 row by flags.

    Multi-GPU: torchrun --nproc-per-node N -m cumx_cli train ...
    """
    from cumx_cli.engine.data.sources import parse_sources
    from cumx_cli.engine.training.loop import fit
    from cumx_cli.engine.training.run_folder import load_run_config
    from cumx_cli.options import load_model

    state = command_state(ctx, verbose=verbose)
    init_model = None
    if resume is not None:
        if init is not None:
            raise ConfigError(f"--init starts a new run; --resume {resume} continues one from its "
                              "last.pt, which already holds its fine-tuned weights: leave out --init")
        config = load_run_config(resume)
        if epochs != _T.epochs:
            config = TrainConfig.from_dict({**config.to_dict(), "epochs": epochs})
    from_env = getattr(ctx.get_parameter_source("data_root"), "name", "") == "ENVIRONMENT"
    root = _data_root(data_root, synthetic_data, state, resume, musdb_from_env=from_env)
    if resume is None:  # after the data folder's checks: --init may download a model
        source_list = parse_sources(sources)
        names = source_list.names
        if init is None:
            if recompute_stats:
                raise ConfigError("--recompute-stats needs --init: a run from random weights "
                                  "always computes the statistics of its data")
            model = ModelConfig(sources=names, hidden_size=hidden_size, num_layers=nb_layers,
                                bridge=bridge)
        else:
            init_model = load_model(init, cache_dir, offline, mirror, state)
            model = _init_model_config(ctx, init_model.config, init, names, hidden_size=hidden_size,
                                       num_layers=nb_layers, bridge=bridge)
            init = _init_spec(init)
        config = TrainConfig(
            model=model, multidomain=mdl, combine=cl, alpha=alpha, seq_seconds=seq_dur,
            samples_per_track=samples_per_track, batch_size=batch_size, epochs=epochs, lr=lr,
            weight_decay=weight_decay, patience=patience, seed=seed, workers=workers,
            device=device, amp=amp, init=init, recompute_stats=recompute_stats,
            data=DataConfig(layout=layout.value, derived=source_list.derived,
                            silence_missing=silence_missing, valid_share=valid_share,
                            gain_min=gain_min, gain_max=gain_max, channel_swap=channel_swap,
                            random_mix=random_mix, polarity=polarity))

    out = resume if resume is not None else out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    display = _Display(config.epochs, state)
    launch = _launch()
    with display.progress or contextlib.nullcontext():
        fit(config, root, out, resume=resume is not None, cache_dir=cache_root(cache_dir),
            launch=launch, events=display, init_model=init_model)
    if launch.rank == 0:  # the other processes of a torchrun launch wrote no run folder
        state.info(f"done: {out / 'best.pt'} (cumx separate --model {out / 'best.pt'} ...)")


#: ``train``'s parameter of each architecture field that ``--init`` takes from its model.
_SIZE_PARAMETERS = {"hidden_size": "hidden_size", "num_layers": "nb_layers", "bridge": "bridge"}


def _init_model_config(ctx: typer.Context, base: ModelConfig, init: str, names: tuple[str, ...],
                       **values: object) -> ModelConfig:
    """The model of an ``--init`` run: ``base``'s architecture with ``--sources`` (when given),
    refusing the size flags given on the command line (or in the environment) that contradict
    it."""
    from cumx_cli.engine.training.init import init_model_config

    def given(name: str) -> bool:
        return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"

    requested = {f: values[f] for f, param in _SIZE_PARAMETERS.items() if given(param)}
    return init_model_config(base, names if given("sources") else None, requested, name=init)


def _init_spec(init: str) -> str:
    """``--init`` as recorded in the run: an existing path made absolute, a name as it is."""
    path = Path(init).expanduser()
    return str(path.resolve()) if path.exists() else init


def _launch() -> Launch:
    """This process's place in a ``torchrun`` launch: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
    (a single process without them). The one place that reads them: the engine reads no
    environment."""
    from cumx_cli.engine.training.distributed import Launch

    try:
        return Launch(rank=int(os.environ.get("RANK", "0")),
                      world_size=int(os.environ.get("WORLD_SIZE", "1")),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun), "
                          f"got {os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, "
                          f"{os.environ.get('LOCAL_RANK')!r}") from None


def _data_root(musdb: Path | None, synthetic: Path | None, state: CliState,
               resume: Path | None = None, *, musdb_from_env: bool = False) -> Path:
    """The data folder: ``--data`` (alias ``--musdb``), ``--synthetic-data`` (generated if
    absent), or for ``--resume`` the one the run recorded. A ``musdb`` that comes from
    ``MUSDB_PATH`` (``musdb_from_env``) is only a default: ``--synthetic-data`` and a recorded
    folder that exists win over it, and it is never "a different --data".

    The messages write the flag as ``--data/--musdb``: Click does not say which of the two
    names was typed."""
    if synthetic is not None and musdb is not None:
        if not musdb_from_env:
            raise ConfigError("give --data/--musdb or --synthetic-data, not both")
        musdb, musdb_from_env = None, False
    if resume is not None:
        return _resume_data_root(resume, musdb, synthetic, musdb_from_env)
    if synthetic is not None:
        if not (synthetic / "train").is_dir():
            from cumx_cli.engine.data.synth import generate_synthetic_musdb

            state.info(f"writing synthetic data to {synthetic}")
            generate_synthetic_musdb(synthetic)
        return synthetic
    if musdb is None:
        raise ConfigError("no data set: --data/--musdb ROOT is required, or set MUSDB_PATH (or "
                          "--synthetic-data DIR to try without MUSDB)")
    return musdb


def _resume_data_root(run: Path, musdb: Path | None, synthetic: Path | None,
                      musdb_from_env: bool = False) -> Path:
    """The recorded data folder of ``run``; a given one must be the same folder.

    A run of an older cumx records none: it needs ``--data``. A recorded folder that no longer
    exists (moved data) may be replaced by a given one.
    """
    from cumx_cli.engine.training.run_folder import recorded_data_root

    given = musdb if musdb is not None else synthetic
    flag = "--data/--musdb" if musdb is not None else "--synthetic-data"
    recorded = recorded_data_root(run)
    if musdb_from_env and recorded is not None and recorded.is_dir():
        return recorded  # MUSDB_PATH is a default, not a request for other data
    if recorded is None:
        if given is None:
            raise ConfigError(f"{run}/config.json records no data folder (a run of an older "
                              f"cumx): resume with --resume {run} --data/--musdb ROOT")
        return given
    if given is None:
        if not recorded.is_dir():
            raise ConfigError(f"{recorded}, the data of run {run}, no longer exists: resume with "
                              "--data/--musdb ROOT")
        return recorded
    if recorded.is_dir() and given.resolve() != recorded.resolve():
        raise ConfigError(f"{flag} {given} is not the data run {run} trained on ({recorded}): "
                          f"leave out {flag} to resume on it, or start a new run with --out")
    return given
