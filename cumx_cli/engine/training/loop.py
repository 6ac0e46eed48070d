"""The training loop: X-UMX's recipe, single process or DistributedDataParallel.

:func:`fit` prepares a :class:`_Session` (data, model, loss, optimizer) and runs epochs, each
:func:`train_one_epoch` then :func:`validate`; what the run writes, and how it resumes exactly,
is :mod:`~cumx_cli.engine.training.run_folder`'s; the scale-out under ``torchrun`` is
:mod:`~cumx_cli.engine.training.distributed`'s (the launch is given by the caller).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.data.layouts import TrainingData, load_training_data
from cumx_cli.engine.data.sampler import RandomMixDataset
from cumx_cli.engine.data.sources import SourceList
from cumx_cli.engine.data.track import Track
from cumx_cli.engine.device import resolve_device
from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.errors import ConfigError, CumxError, DatasetError, TrainingError
from cumx_cli.engine.events import NoTrainEvents, TrainEvents
from cumx_cli.engine.losses import LossTerms, MultiDomainLoss
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.training import distributed
from cumx_cli.engine.training.distributed import Launch, sum_over_ranks
from cumx_cli.engine.training.init import (
    SourceMapping,
    check_architecture,
    load_init,
    transfer_weights,
)
from cumx_cli.engine.training.run_folder import RunFolder, RunState
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


def prepare_data(config: TrainConfig, root: Path, world_size: int = 1) -> TrainingData:
    """Load and check the training and validation data before any work
    (:func:`~cumx_cli.engine.data.layouts.load_training_data`).

    ``world_size`` processes share an epoch's examples.

    Raises:
        DatasetError: missing or malformed folders, missing stems, or a batch larger than an
            epoch's examples.
    """
    sources = SourceList(config.model.sources, config.data.derived)
    data = load_training_data(root, sources, config.data, config.model.num_channels)
    train = data.train
    per_epoch = config.samples_per_track * len(train) // world_size
    if config.batch_size > per_epoch:
        raise DatasetError(
            f"--batch-size {config.batch_size} is larger than an epoch's {per_epoch} examples "
            f"({len(train)} training tracks x --samples-per-track {config.samples_per_track}); "
            "lower --batch-size or raise --samples-per-track")
    return data


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


#: The training examples, batched: (mixture, stems) per step.
Batches = DataLoader[tuple[torch.Tensor, torch.Tensor]]


def train_one_epoch(model: torch.nn.Module, stft: STFT, loss_fn: MultiDomainLoss, loader: Batches,
                    optimizer: torch.optim.Optimizer, device: torch.device, amp: str | None,
                    events: TrainEvents) -> float:
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
    stats = sum_over_ranks(torch.tensor([total, count], dtype=torch.float64))
    return float(stats[0] / stats[1])


def _batches(loader: Batches) -> Iterator[Any]:
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
        loss, energy, error, error_mix = _validate_track(model, stft, loss_fn, track, sources,
                                                         chunk_samples, device)
        losses.append(loss)
        for j, s in enumerate(sources):
            sdr[s].append(float(10 * torch.log10(energy[j] / error[j].clamp_min(1e-12))))
            base[s].append(float(10 * torch.log10(energy[j] / error_mix[j].clamp_min(1e-12))))
    mean = {s: sum(v) / len(v) for s, v in sdr.items()}
    mean_base = {s: sum(v) / len(v) for s, v in base.items()}
    return sum(losses) / len(losses), mean, mean_base


def _validate_track(model: torch.nn.Module, stft: STFT, loss_fn: MultiDomainLoss, track: Track,
                    sources: tuple[str, ...], chunk_samples: int, device: torch.device
                    ) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One track's mean chunk loss, and per source its energy, its estimate's error energy and
    the mixture's error energy (float64, summed over the chunks)."""
    count = max(1, track.frames // chunk_samples)
    size = chunk_samples if track.frames >= chunk_samples else track.frames
    energy = torch.zeros(len(sources), dtype=torch.float64)
    error = torch.zeros_like(energy)
    error_mix = torch.zeros_like(energy)
    losses = []
    for k in range(count):
        mixture = track.read("mixture", k * size, size)[None].to(device)
        stems = torch.stack([track.read(s, k * size, size) for s in sources])[None].to(device)
        terms, est_wave = _loss(loss_fn, model, stft, mixture, stems)
        losses.append(float(terms.total))
        if est_wave is None:  # no time-domain term in the loss: make the waveforms anyway
            est_wave = model_outputs(model, stft, mixture, stems, True)[2]
        assert est_wave is not None
        length = est_wave.shape[-1]
        ref = stems[0, :, :, :length].double().cpu()
        energy += ref.pow(2).sum(dim=(1, 2))
        error += (ref - est_wave[0].double().cpu()).pow(2).sum(dim=(1, 2))
        error_mix += (ref - mixture[0, None, :, :length].double().cpu()).pow(2).sum(dim=(1, 2))
    return sum(losses) / len(losses), energy, error, error_mix


def _build(config: TrainConfig, rate: int, stats: tuple[torch.Tensor, torch.Tensor] | None,
           init: CrossUMX | None = None) -> tuple[CrossUMX, SourceMapping | None]:
    """The model to train: random weights, then ``init``'s networks mapped by source name
    (:mod:`~cumx_cli.engine.training.init`), then the input scaling from ``stats`` if given."""
    model = CrossUMX(config.model_config(rate))
    mapping = None
    if init is not None:
        check_architecture(init.config, model.config, config.init or "the model")
        mapping = transfer_weights(init, model)
    if stats is not None:
        mean, std = stats
        max_bin = model.config.max_bin
        with torch.no_grad():
            for net in (model.net(source) for source in model.sources):
                net.input_mean.copy_(-mean[:max_bin])
                net.input_scale.copy_(1.0 / std[:max_bin])
    return model, mapping


@dataclass
class _Session:
    """What a run's epochs work with; ``model`` is DDP-wrapped in a multi-process launch."""

    config: TrainConfig
    launch: Launch
    device: torch.device
    model: torch.nn.Module
    stft: STFT
    loss_fn: MultiDomainLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    dataset: RandomMixDataset
    loader: Batches
    valid_tracks: list[Track]
    rate: int
    init: dict[str, Any] | None = None


def _new_session(config: TrainConfig, launch: Launch, device: torch.device, root: Path,
                 run: RunFolder, resume: bool, cache_dir: Path | None,
                 events: TrainEvents, init_model: CrossUMX | None = None
                 ) -> tuple[_Session, RunState]:
    """Load the data, and build (or restore from ``last.pt``) the model and optimizer.

    The order is the RNG's: the model is initialised right after ``torch.manual_seed``, and a
    resumed run then takes the RNG state of its checkpoint. A new run with ``config.init`` starts
    from ``init_model`` (loaded from ``config.init`` when None); a resumed one never reads it.
    """
    torch.manual_seed(config.seed)
    data = prepare_data(config, root, launch.world_size)
    train_tracks, valid_tracks, rate = data.train, data.valid, data.rate
    events.message(f"data: {root} ({data.layout} layout); {data.validation}")
    for note in data.notes:
        events.message(f"data: {note}")
    events.message(f"{'X-UMX' if config.model.bridge else 'UMX'}: {len(train_tracks)} training "
                   f"and {len(valid_tracks)} validation tracks from {root} -> {run.path}")
    run.check(resume)
    init = None
    if config.init is not None and not resume:
        init = init_model or _load_init(config.init, cache_dir)
    stats = None
    if not resume and (init is None or config.recompute_stats):
        events.message(f"input statistics over {len(train_tracks)} training tracks")
        shape = config.model_config(rate)
        stats = input_statistics(train_tracks, shape.n_fft, shape.hop_length, cache_dir=cache_dir,
                                 progress=events.stats_progress)
    model, mapping = _build(config, rate, stats, init)
    model = model.to(device)
    record = None
    if mapping is not None:
        record = {"model": config.init, **mapping.to_dict(),
                  "input_scaling": "recomputed" if config.recompute_stats else "kept"}
        events.message(f"fine-tuning {config.init}: {mapping.describe()}; input scaling "
                       f"{record['input_scaling']}; a fresh optimizer at lr {config.lr:g}")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience,
        cooldown=config.lr_cooldown)
    state = RunState()
    if resume:
        state = run.restore(model, optimizer, scheduler)
        events.message(f"resuming {run.path} after epoch {state.epoch}")
    dataset = RandomMixDataset(train_tracks, config.model.sources, round(config.seq_seconds * rate),
                               config.samples_per_track, config.seed, launch.rank, launch.world_size,
                               data=config.data, pools=data.pools)
    # Workers are re-created each epoch (not persistent) so they see the dataset's new epoch.
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, drop_last=True,
                        num_workers=config.workers)
    session = _Session(config, launch, device, distributed.wrap(model, launch),
                       STFT(model.config.n_fft, model.config.hop_length),
                       MultiDomainLoss.from_config(config), optimizer, scheduler, dataset, loader,
                       valid_tracks, rate, record)
    return session, state


def _load_init(spec: str, cache_dir: Path | None) -> CrossUMX:
    """``TrainConfig.init``'s model, for callers that did not load it (the weights cache under
    ``cache_dir``, online)."""
    from cumx_cli.engine.weights.cache import WeightsSettings

    return load_init(spec, WeightsSettings(cache_dir=cache_dir))[1]


def _run_epoch(session: _Session, state: RunState, events: TrainEvents) -> EpochResult:
    """Train and validate epoch ``state.epoch + 1``, and record it in ``state``."""
    s, config = session, session.config
    epoch = state.epoch + 1
    start = time.perf_counter()
    s.dataset.set_epoch(epoch)
    events.epoch_started(epoch, len(s.loader))
    train_loss = train_one_epoch(s.model, s.stft, s.loss_fn, s.loader, s.optimizer, s.device,
                                 config.amp, events)
    sources = config.model.sources
    valid_loss, sdr, base = math.nan, dict.fromkeys(sources, math.nan), dict.fromkeys(sources, math.nan)
    if s.launch.rank == 0:
        valid_loss, sdr, base = validate(distributed.unwrap(s.model), s.stft, s.loss_fn,
                                         s.valid_tracks, sources,
                                         round(config.valid_seconds * s.rate), s.device)
    # Every rank takes rank 0's validation: the same epoch results (and scheduler steps) on all.
    n = len(sources)
    shared = distributed.from_rank0([valid_loss, *(sdr[k] for k in sources),
                                     *(base[k] for k in sources)], s.launch.rank)
    valid_loss = shared[0]
    sdr = dict(zip(sources, shared[1:n + 1], strict=True))
    base = dict(zip(sources, shared[n + 1:], strict=True))
    s.scheduler.step(valid_loss)
    best = state.record(epoch, valid_loss)
    result = EpochResult(epoch, train_loss, valid_loss, sdr, base,
                         s.optimizer.param_groups[0]["lr"], time.perf_counter() - start, best)
    state.history.append(result.to_dict())
    return result


def fit(config: TrainConfig, root: Path, out: Path, *, resume: bool = False,
        cache_dir: Path | None = None, launch: Launch | None = None,
        events: TrainEvents | None = None, stop_after: int | None = None,
        init_model: CrossUMX | None = None) -> list[EpochResult]:
    """Train (or resume) a run in ``out``; returns the epochs run by this call.

    Args:
        cache_dir: the cache root (input statistics go to ``<cache_dir>/stats``); None: none.
        init_model: the model of ``config.init``, already loaded (None: loaded here from
            ``config.init``, a published name going through the weights cache under
            ``cache_dir``); unused when resuming.
        launch: this process's place in a ``torchrun`` launch; None: a single process.
        stop_after: end the call after that many epochs (for tests of resuming).
    """
    events = events or NoTrainEvents()
    device = resolve_device(config.device)
    if config.amp == "bf16" and device.type != "cuda":
        raise ConfigError("amp bf16 needs a CUDA device", field="amp")
    launch, device = distributed.setup(launch or Launch(), device)
    run = RunFolder(out)
    session, state = _new_session(config, launch, device, root, run, resume, cache_dir, events,
                                  init_model)
    if launch.rank == 0:
        run.start(config, root, init=session.init)
    results: list[EpochResult] = []
    try:
        while state.epoch < config.epochs:
            result = _run_epoch(session, state, events)
            if launch.rank == 0:
                run.save_epoch(session.model, config, state, session.optimizer,
                               session.scheduler, result.best)
            results.append(result)
            events.epoch_finished(result)
            if config.patience is not None and state.bad_epochs >= config.patience:
                events.message(f"no improvement for {config.patience} epochs: stopping early")
                break
            if stop_after is not None and len(results) >= stop_after:
                break
    except BaseException:
        # A run that fails (or is interrupted) before its first checkpoint leaves nothing behind.
        run.discard_if_unstarted()
        raise
    return results
