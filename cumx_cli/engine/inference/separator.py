"""The batched separator: STFT -> model -> Wiener/EM -> iSTFT over chunks of many tracks.

:class:`Separator` owns a model, an STFT and an :class:`InferenceConfig`. Tracks are cut into
chunks (:mod:`chunking`); chunks of equal length, from one track or from several, are stacked into
batches of ``batch_size`` and pushed through the whole pipeline at once, and the outputs are
cross-faded back per track. Work is pulled lazily from the tracks, so at most one batch of chunks
(plus one chunk of overlap per open track) is in memory, whatever the track lengths.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import torch
import torch.nn.functional as F

from cumx_cli.engine.config import NORBERT_EPS, OPENUNMIX_EPS, OPENUNMIX_WIENER_WINDOW, InferenceConfig
from cumx_cli.engine.device import resolve_device
from cumx_cli.engine.dsp.stft import STFT, magnitude
from cumx_cli.engine.dsp.wiener import wiener
from cumx_cli.engine.errors import ConfigError, CumxError
from cumx_cli.engine.inference.chunking import ChunkPlan, OverlapAdd, plan_chunks
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.shapes import check_shape

log = logging.getLogger(__name__)

RESIDUAL = "residual"


class TrackJob(Protocol):
    """One track as the separator sees it: chunks in, separated samples out."""

    plan: ChunkPlan
    failed: bool

    def read_chunk(self, index: int) -> torch.Tensor:
        """Chunk ``index`` of the input at the model's rate and channel count: (channel, time)."""

    def add_output(self, index: int, output: torch.Tensor) -> None:
        """Receive chunk ``index``'s separated output: (source, channel, time)."""

    def fail(self, error: CumxError) -> None:
        """Give up on this track; no further calls follow."""


class Separator:
    """Separate waveforms with a loaded model.

    Args:
        model: the network (its ``config`` gives the STFT, rate and sources).
        config: chunking, batching and Wiener options.
        device: where the model runs; ``None`` resolves ``config.device``.
    """

    def __init__(self, model: CrossUMX, config: InferenceConfig | None = None,
                 device: torch.device | None = None) -> None:
        self.config = config or InferenceConfig()
        self.device = device or resolve_device(self.config.device)
        self.model = model.eval().to(self.device)
        self.stft = STFT(model.config.n_fft, model.config.hop_length).to(self.device)
        mc = model.config
        self.sample_rate = mc.sample_rate
        self.chunk_samples = max(1, round(self.config.chunk_seconds * mc.sample_rate))
        self.overlap_samples = min(round(self.config.overlap_seconds * mc.sample_rate),
                                   self.chunk_samples - 1)
        # Each family filters as its reference code does (see InferenceConfig).
        eps, window = self.config.wiener_eps, self.config.wiener_window
        self.wiener_eps: float = eps if eps is not None else (NORBERT_EPS if mc.bridge else OPENUNMIX_EPS)
        self.wiener_window: int = (window if window is not None
                                   else 0 if mc.bridge else OPENUNMIX_WIENER_WINDOW)
        self.batch_size = self.config.batch_size or (1 if self.device.type == "cpu" else 4)
        if self.config.niter > 0 and len(mc.sources) == 1 and not self.config.residual:
            raise ConfigError("the Wiener filter needs two or more sources: this model has one; "
                              "add --residual or use --niter 0")

    @property
    def sources(self) -> tuple[str, ...]:
        """Output sources: the model's, plus ``residual`` when enabled."""
        extra = (RESIDUAL,) if self.config.residual else ()
        return self.model.sources + extra

    @property
    def num_channels(self) -> int:
        return self.model.config.num_channels

    def plan(self, length: int) -> ChunkPlan:
        """The chunk plan for a track of ``length`` samples at the model's rate."""
        return plan_chunks(length, self.chunk_samples, self.overlap_samples)

    @torch.inference_mode()
    def process(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Separate a batch of equal-length waveforms in one pass (no chunking).

        Shapes:
            waveforms: (batch, channel, time) at the model's sample rate
            returns:   (batch, source, channel, time), float32 on the CPU
        """
        check_shape(waveforms, ("batch", "channel", "time"), channel=self.num_channels)
        length = waveforms.shape[-1]
        x = waveforms.to(self.device, torch.float32)
        if length < self.stft.min_length():  # too short to reflect-pad: zero-pad, cut after
            x = F.pad(x, (0, self.stft.min_length() - length))
        mix_stft = self.stft(x)  # (batch, channel, freq, frame)
        mag = magnitude(mix_stft)
        est = self.model(mag).mul_(mag.unsqueeze(1))  # masks times the mixture magnitude
        est = wiener(est, mix_stft, niter=self.config.niter, softmask=self.config.softmask,
                     residual=self.config.residual, eps=self.wiener_eps,
                     window=self.wiener_window, mix_magnitude=mag)
        del mix_stft, mag
        # One source at a time: the inverse transform's frame buffer stays a quarter the size.
        out = torch.empty(est.shape[0], est.shape[1], est.shape[2], length)
        for j in range(est.shape[1]):
            out[:, j] = self.stft.inverse(est[:, j], x.shape[-1])[..., :length].float().cpu()
        return out

    def run(self, tracks: Iterable[TrackJob],
            on_batch: Callable[[int], None] | None = None) -> None:
        """Separate tracks chunk by chunk, batching equal-length chunks across tracks.

        Tracks are pulled from ``tracks`` lazily. A :class:`CumxError` raised while reading a
        chunk or delivering an output fails that track only; the others go on.
        """
        pending: list[tuple[TrackJob, int, torch.Tensor]] = []
        for track in tracks:
            for index in range(len(track.plan)):
                try:
                    chunk = track.read_chunk(index)
                except CumxError as exc:
                    track.fail(exc)
                    break
                if pending and pending[0][2].shape[-1] != chunk.shape[-1]:
                    self._flush(pending, on_batch)
                pending.append((track, index, chunk))
                if len(pending) == self.batch_size:
                    self._flush(pending, on_batch)
        if pending:
            self._flush(pending, on_batch)

    def _flush(self, pending: list[tuple[TrackJob, int, torch.Tensor]],
               on_batch: Callable[[int], None] | None) -> None:
        live = [(t, i, c) for t, i, c in pending if not t.failed]
        pending.clear()
        if not live:
            return
        outputs = self.process(torch.stack([c for _, _, c in live]))
        for (track, index, _), out in zip(live, outputs, strict=True):
            if track.failed:
                continue
            try:
                track.add_output(index, out)
            except CumxError as exc:
                track.fail(exc)
        if on_batch is not None:
            on_batch(len(live))

    def separate(self, waveform: torch.Tensor) -> torch.Tensor:
        """Separate in-memory tracks of equal length with chunking and cross-fades.

        Shapes:
            waveform: (batch, channel, time) at the model's sample rate
            returns:  (batch, source, channel, time)
        """
        check_shape(waveform, ("batch", "channel", "time"), channel=self.num_channels)
        jobs = [_MemoryTrack(item, self.plan(waveform.shape[-1])) for item in waveform]
        self.run(jobs)
        for job in jobs:
            if job.error is not None:
                raise job.error
        return torch.stack([torch.cat(job.outputs, dim=-1) for job in jobs])


class _MemoryTrack:
    """A :class:`TrackJob` over a waveform already in memory."""

    def __init__(self, waveform: torch.Tensor, plan: ChunkPlan) -> None:
        self.waveform = waveform
        self.plan = plan
        self.failed = False
        self.error: CumxError | None = None
        self.ola = OverlapAdd(plan)
        self.outputs: list[torch.Tensor] = []

    def read_chunk(self, index: int) -> torch.Tensor:
        start = self.plan.starts[index]
        return self.waveform[..., start : start + self.plan.size]

    def add_output(self, index: int, output: torch.Tensor) -> None:
        self.outputs.append(self.ola.add(output))

    def fail(self, error: CumxError) -> None:
        self.failed, self.error = True, error
