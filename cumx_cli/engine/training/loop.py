"""The training loop: X-UMX's recipe, single process or DistributedDataParallel.

``fit`` composes :func:`train_one_epoch` and :func:`validate`. It writes, in the run folder
(rank 0 only): ``last.pt`` after every epoch and ``best.pt`` when the validation loss improves
(both atomically, in cumx's checkpoint format, directly usable by ``cumx separate``),
``config.json``, ``metrics.jsonl`` (one line per epoch) and ``curves.png``.

Exact resume: an epoch's examples depend only on ``(seed, epoch, rank, index)``, and ``last.pt``
holds the optimizer, scheduler and the RNG state, so a run stopped after epoch k and resumed
produces the same epochs as one that never stopped.

Scale-out: under ``torchrun`` (``WORLD_SIZE > 1``) each rank trains on its own examples with
DDP (NCCL on CUDA, gloo on the CPU); rank 0 validates, decides and writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from cumx_cli.engine.checkpoint import read_checkpoint, save_model
from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.data.musdb import Track, load_tracks
from cumx_cli.engine.data.sampler import RandomMixDataset
from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.errors import (
    CheckpointError,
    ConfigError,
    CumxError,
    DatasetError,
    TrainingError,
)
from cumx_cli.engine.files import replacing
from cumx_cli.engine.inference.separator import resolve_device
from cumx_cli.engine.losses import LossTerms, MultiDomainLoss
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.training.stats import input_statistics

log = logging.getLogger(__name__)


@dataclass
class EpochResult:
    """What one epoch measured; one line of ``metrics.jsonl``."""

    epoch: int
    train_loss: float
    valid_loss: float
    valid_sdr: dict[str, float]
    mixture_sdr: dict[str, float]
    lr: float
    seconds: float
    best: bool = False

    @property
    def valid_sdr_mean(self) -> float:
        return sum(self.valid_sdr.values()) / len(self.valid_sdr)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["valid_sdr_mean"] = self.valid_sdr_mean
        return data


class TrainEvents:
    """Progress hooks; the default does nothing (the CLI draws a progress display)."""

    def message(self, text: str) -> None: ...

    def stats_progress(self, done: int, total: int) -> None: ...

    def epoch_started(self, epoch: int, steps: int) -> None: ...

    def step_done(self, loss: float, samples: int) -> None: ...

    def epoch_finished(self, result: EpochResult) -> None: ...


@dataclass
class _State:
    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare_data(config: TrainConfig, root: Path) -> tuple[list[Track], list[Track]]:
    """Load and check the training and validation tracks before any work.

    Raises:
        DatasetError: missing or malformed folders, missing stems, or a batch larger than an
            epoch's examples.
    """
    train = load_tracks(root, "train", config.sources)
    valid = load_tracks(root, "valid", config.sources)
    per_epoch = config.samples_per_track * len(train) // _world()[1]
    if config.batch_size > per_epoch:
        raise DatasetError(
            f"--batch-size {config.batch_size} is larger than an epoch's {per_epoch} examples "
            f"({len(train)} training tracks x --samples-per-track {config.samples_per_track}); "
            "lower --batch-size or raise --samples-per-track")
    return train, valid


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def model_outputs(model: torch.nn.Module, stft: STFT, mixture: torch.Tensor, stems: torch.Tensor,
                  multidomain: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Estimated and target magnitudes, and the estimated waveforms for the time-domain term.

    The waveform of a source is the iSTFT of its mask times the complex mixture (the mixture's
    phase), without a length argument: ``(frames - 1) * hop`` samples (spec §1.3 step 13).

    Shapes:
        mixture: (batch, channel, time); stems: (batch, source, channel, time)
        returns: est_mag, target_mag (batch, source, channel, freq, frame);
                 est_wave (batch, source, channel, (frame - 1) * hop) or None
    """
    mix_stft = stft(mixture)
    mag = mix_stft.abs()
    masks = model(mag)
    est_mag = masks * mag.unsqueeze(1)
    target_mag = stft(stems).abs()
    est_wave = None
    if multidomain:
        length = (mix_stft.shape[-1] - 1) * stft.hop_length
        est_wave = stft.inverse(masks * mix_stft.unsqueeze(1), length)
    return est_mag, target_mag, est_wave


def _loss(loss_fn: MultiDomainLoss, model: torch.nn.Module, stft: STFT, mixture: torch.Tensor,
          stems: torch.Tensor) -> tuple[LossTerms, torch.Tensor | None]:
    est_mag, target_mag, est_wave = model_outputs(model, stft, mixture, stems, loss_fn.multidomain)
    return loss_fn(est_mag, target_mag, est_wave, stems, mixture), est_wave


def train_one_epoch(model: torch.nn.Module, stft: STFT, loss_fn: MultiDomainLoss,
                    loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device,
                    amp: str | None, events: TrainEvents) -> float:
    """One pass over the epoch's examples; returns the mean training loss (over all ranks)."""
    model.train()
    total, count = 0.0, 0
    for step, (mixture, stems) in enumerate(_batches(loader), start=1):
        mixture, stems = mixture.to(device), stems.to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            terms, _ = _loss(loss_fn, model, stft, mixture, stems)
        value = float(terms.total.detach())
        if not math.isfinite(value):  # stop before the optimizer writes NaN into the weights
            raise TrainingError(f"the training loss became {value} at step {step} of the epoch: "
                                f"training diverged (a new run with a lower --lr may help); "
                                f"the checkpoints saved so far are unchanged")
        terms.total.backward()
        optimizer.step()
        total += value * mixture.shape[0]
        count += mixture.shape[0]
        events.step_done(value, mixture.shape[0])
    stats = torch.tensor([total, count], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stats)
    return float(stats[0] / stats[1])


def _batches(loader: DataLoader) -> Iterator[Any]:
    """The loader's batches; a cumx error raised in a worker process is re-raised as itself.

    A DataLoader worker's exception comes back with the worker's whole traceback as its message;
    the original one-line message is its last line (``module.Class: message``).
    """
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except CumxError as exc:
            lines = str(exc).strip().splitlines()
            prefix = f"{type(exc).__name__}: "
            if len(lines) > 1 and lines[0].startswith("Caught ") and prefix in lines[-1]:
                raise type(exc)(lines[-1].split(prefix, 1)[1]) from exc
            raise
        yield batch


@torch.no_grad()
def validate(model: torch.nn.Module, stft: STFT, loss_fn: MultiDomainLoss, tracks: list[Track],
             sources: tuple[str, ...], chunk_samples: int,
             device: torch.device) -> tuple[float, dict[str, float], dict[str, float]]:
    """Validation loss and SDR per source on whole tracks, in chunks (spec §3.4).

    Each track is cut into consecutive chunks of ``chunk_samples`` (a shorter tail is dropped,
    as in Sony's code; a track shorter than one chunk is one chunk). The loss is the mean over a
    track's chunks, then over tracks. The SDR of a source, ``10 log10(|s|^2 / |s - s_hat|^2)``
    over a whole track with the masks' waveforms, is averaged over tracks; the same SDR of the
    mixture used as every source's estimate is returned as the baseline.
    """
    model.eval()
    losses: list[float] = []
    sdr: dict[str, list[float]] = {s: [] for s in sources}
    base: dict[str, list[float]] = {s: [] for s in sources}
    for track in tracks:
        count = max(1, track.frames // chunk_samples)
        size = chunk_samples if track.frames >= chunk_samples else track.frames
        energy = torch.zeros(len(sources), dtype=torch.float64)
        error = torch.zeros_like(energy)
        error_mix = torch.zeros_like(energy)
        track_losses = []
        for k in range(count):
            mixture = track.read("mixture", k * size, size)[None].to(device)
            stems = torch.stack([track.read(s, k * size, size) for s in sources])[None].to(device)
            terms, est_wave = _loss(loss_fn, model, stft, mixture, stems)
            track_losses.append(float(terms.total))
            if est_wave is None:  # no time-domain term in the loss: make the waveforms anyway
                est_wave = model_outputs(model, stft, mixture, stems, True)[2]
            assert est_wave is not None
            length = est_wave.shape[-1]
            ref = stems[0, :, :, :length].double().cpu()
            energy += ref.pow(2).sum(dim=(1, 2))
            error += (ref - est_wave[0].double().cpu()).pow(2).sum(dim=(1, 2))
            error_mix += (ref - mixture[0, None, :, :length].double().cpu()).pow(2).sum(dim=(1, 2))
        losses.append(sum(track_losses) / len(track_losses))
        for j, s in enumerate(sources):
            sdr[s].append(float(10 * torch.log10(energy[j] / error[j].clamp_min(1e-12))))
            base[s].append(float(10 * torch.log10(energy[j] / error_mix[j].clamp_min(1e-12))))
    mean = {s: sum(v) / len(v) for s, v in sdr.items()}
    mean_base = {s: sum(v) / len(v) for s, v in base.items()}
    return sum(losses) / len(losses), mean, mean_base


def _build(config: TrainConfig, rate: int, stats: tuple[torch.Tensor, torch.Tensor] | None) -> CrossUMX:
    model = CrossUMX(config.model_config(sample_rate=rate))
    if stats is not None:
        mean, std = stats
        max_bin = model.config.max_bin
        with torch.no_grad():
            for net in model.nets.values():
                net.input_mean.copy_(-mean[:max_bin])
                net.input_scale.copy_(1.0 / std[:max_bin])
    return model


def _save(path: Path, model: torch.nn.Module, config: TrainConfig, state: _State,
          optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    net = model.module if hasattr(model, "module") else model
    save_model(net, path, extra={
        "train_config": config.to_dict(),
        "training": {
            "epoch": state.epoch, "best_loss": state.best_loss, "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs, "history": state.history,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
        },
    })


def load_run_config(run: Path) -> TrainConfig:
    """The training config stored in ``RUNDIR/last.pt`` (for ``--resume``)."""
    last = Path(run) / "last.pt"
    if not last.is_file():
        raise CheckpointError(f"{run}: no last.pt to resume from; start a run with --out {run}")
    data = read_checkpoint(last)
    if not isinstance(data, dict) or "train_config" not in data:
        raise CheckpointError(f"{last}: not a cumx training checkpoint (no train_config)")
    return TrainConfig.from_dict(data["train_config"])


def _setup_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def _broadcast(values: list[float], rank: int) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values if rank == 0 else [0.0] * len(values), dtype=torch.float64)
    dist.broadcast(t, 0)
    return t.tolist()


def fit(config: TrainConfig, root: Path, out: Path, *, resume: bool = False,
        cache_dir: Path | None = None, events: TrainEvents | None = None,
        stop_after: int | None = None) -> list[EpochResult]:
    """Train (or resume) a run in ``out``; returns the epochs run by this call.

    ``stop_after`` ends the call after that many epochs (for tests of resuming).
    """
    events = events or TrainEvents()
    device = resolve_device(config.device)
    if config.amp == "bf16" and device.type != "cuda":
        raise ConfigError("--amp bf16 needs a CUDA device")
    rank, world, device = _setup_distributed(device)
    torch.manual_seed(config.seed)
    train_tracks, valid_tracks = prepare_data(config, root)
    rate = train_tracks[0].rate
    events.message(f"{'X-UMX' if config.bridge else 'UMX'}: {len(train_tracks)} training and "
                   f"{len(valid_tracks)} validation tracks from {root} -> {out}")
    out = Path(out)
    last = out / "last.pt"
    if resume and not last.is_file():
        raise CheckpointError(f"{out}: no last.pt to resume from")
    if not resume and last.is_file():
        raise ConfigError(f"{out} already holds a run; use --resume {out} or another --out")

    stats = None
    if not resume:
        events.message(f"input statistics over {len(train_tracks)} training tracks")
        stats = input_statistics(train_tracks, cache_dir=cache_dir, progress=events.stats_progress)
    model = _build(config, rate, stats).to(device)
    stft = STFT(model.config.n_fft, model.config.hop_length)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience,
        cooldown=config.lr_cooldown)
    state = _State()
    if resume:
        data = read_checkpoint(last)
        model.load_state_dict(data["state_dict"])
        t = data["training"]
        optimizer.load_state_dict(t["optimizer"])
        scheduler.load_state_dict(t["scheduler"])
        state = _State(t["epoch"], t["best_loss"], t["best_epoch"], t["bad_epochs"], list(t["history"]))
        torch.set_rng_state(t["rng"])
        events.message(f"resuming {out} after epoch {state.epoch}")
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)

    loss_fn = MultiDomainLoss(config.alpha, config.multidomain, config.combine, config.wsdr_trim)
    dataset = RandomMixDataset(train_tracks, config.sources, round(config.seq_seconds * rate),
                               config.samples_per_track, config.seed, rank, world)
    # Workers are re-created each epoch (not persistent) so they see the dataset's new epoch.
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, drop_last=True,
                        num_workers=config.workers)
    created = rank == 0 and not out.exists()
    if rank == 0:
        with _writing(out):
            out.mkdir(parents=True, exist_ok=True)
            _write_text(out / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    results: list[EpochResult] = []
    try:
        while state.epoch < config.epochs:
            epoch = state.epoch + 1
            start = time.perf_counter()
            dataset.set_epoch(epoch)
            events.epoch_started(epoch, len(loader))
            train_loss = train_one_epoch(model, stft, loss_fn, loader, optimizer, device,
                                         config.amp, events)
            valid_loss, sdr, base = math.nan, {s: math.nan for s in config.sources}, {}
            if rank == 0:
                net = model.module if world > 1 else model
                valid_loss, sdr, base = validate(net, stft, loss_fn, valid_tracks, config.sources,
                                                 round(config.valid_seconds * rate), device)
            (valid_loss,) = _broadcast([valid_loss], rank)
            scheduler.step(valid_loss)
            best = valid_loss < state.best_loss
            state.epoch = epoch
            if best:
                state.best_loss, state.best_epoch, state.bad_epochs = valid_loss, epoch, 0
            else:
                state.bad_epochs += 1
            result = EpochResult(epoch, train_loss, valid_loss, sdr, base,
                                 optimizer.param_groups[0]["lr"], time.perf_counter() - start, best)
            state.history.append(result.to_dict())
            if rank == 0:
                with _writing(out):
                    _save(last, model, config, state, optimizer, scheduler)
                    if best:
                        _save(out / "best.pt", model, config, state, optimizer, scheduler)
                    # Rewritten whole from the history (atomically), never appended to: a failed
                    # or killed write cannot leave a partial line.
                    _write_text(out / "metrics.jsonl",
                                "".join(json.dumps(h) + "\n" for h in state.history))
                    _plot(out / "curves.png", state.history)
            results.append(result)
            events.epoch_finished(result)
            if config.patience is not None and state.bad_epochs >= config.patience:
                events.message(f"no improvement for {config.patience} epochs: stopping early")
                break
            if stop_after is not None and len(results) >= stop_after:
                break
    except BaseException:
        # A run that fails (or is interrupted) before its first checkpoint leaves nothing behind.
        if created and not last.exists():
            _remove_empty_run(out)
        raise
    return results


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """A run folder that cannot be written (read-only, not a folder, a full disk): one error
    that names it, not an OSError."""
    try:
        yield
    except OSError as exc:
        raise CheckpointError(f"{out}: cannot write the run folder ({exc.strerror or exc})") from exc


def _remove_empty_run(out: Path) -> None:
    """Remove a run folder this call created, holding only files written before any checkpoint."""
    for name in ("config.json", "metrics.jsonl", "curves.png"):
        (out / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        out.rmdir()  # only if nothing else (e.g. the user's own files) is in it


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
