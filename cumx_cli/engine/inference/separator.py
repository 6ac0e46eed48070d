"""The batched separator: STFT -> model -> Wiener/EM -> iSTFT over chunks of many tracks.

:class:`Separator` owns a model, an STFT and an :class:`InferenceConfig`. Tracks are cut into
chunks (:mod:`chunking`); chunks of equal length, from one track or from several, are stacked into
batches of ``batch_size`` and pushed through the whole pipeline at once, and the outputs are
cross-faded back per track. Work is pulled lazily from the tracks, so at most two batches of
chunks (plus one chunk of overlap per open track) are in memory, whatever the track lengths.

Two stages overlap (:meth:`Separator.run`): while one worker thread runs batch N through the STFT
and the network, the calling thread filters batch N - 1 (Wiener/EM, inverse STFT), delivers its
outputs to the tracks (cross-fades, scratch, and for a finished track its encoding), and reads and
decodes the chunks of batch N + 1. So the work around the network, and a folder's decoding and
encoding, is done while the network runs instead of after it. Every track callback and
``on_batch`` still runs on the calling thread, in the order the batches were made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
from cumx_cli.engine.model.threads import SourceThreads, intra_op_threads
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
        overlap: in :meth:`run`, run the network in a worker thread while the calling thread
            does the rest (see the module docstring); ``False`` does everything in the calling
            thread, one batch after the other (the same numbers, for measuring the overlap; on
            a CPU to rounding, as the overlapped filter runs with half the cores: ``_Stages``).
    """

    def __init__(self, model: CrossUMX, config: InferenceConfig | None = None,
                 device: torch.device | None = None, *, overlap: bool = True) -> None:
        self.config = config or InferenceConfig()
        self.overlap = overlap
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
        self._source_threads: SourceThreads | None = None  # made at the first batch, on CPU
        self._source_threads_lock = threading.Lock()
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

    def process(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Separate a batch of equal-length waveforms in one pass (no chunking).

        Shapes:
            waveforms: (batch, channel, time) at the model's sample rate
            returns:   (batch, source, channel, time), float32 on the CPU
        """
        return self._filter(self._network(waveforms))

    @torch.inference_mode()
    def _network(self, waveforms: torch.Tensor) -> _Estimates:
        """The first stage of :meth:`process`: STFT and network (it may run in a worker thread:
        it touches nothing but its input, the model and the STFT's window)."""
        check_shape(waveforms, ("batch", "channel", "time"), channel=self.num_channels)
        length = waveforms.shape[-1]
        x = waveforms.to(self.device, torch.float32)
        if length < self.stft.min_length():  # too short to reflect-pad: zero-pad, cut after
            x = F.pad(x, (0, self.stft.min_length() - length))
        mix_stft = self.stft(x)  # (batch, channel, freq, frame)
        mag = magnitude(mix_stft)
        est = self.model(mag, self._threads()).mul_(mag.unsqueeze(1))  # masks x mixture magnitude
        return _Estimates(est, mix_stft, mag, length, x.shape[-1])

    def _threads(self) -> SourceThreads | None:
        """The threads that run the source networks side by side on a CPU (:mod:`.threads`
        of the model), started at the first call, with the core count this thread sees."""
        with self._source_threads_lock:
            if self._source_threads is None:  # for_device decides (None off a CPU)
                self._source_threads = SourceThreads.for_device(self.device, len(self.model.sources))
            return self._source_threads

    @torch.inference_mode()
    def _filter(self, stage: _Estimates, pool: SourceThreads | None = None) -> torch.Tensor:
        """The second stage of :meth:`process`: Wiener/EM and the inverse STFT.

        With ``pool`` (idle source threads), the Wiener windows (or a single window's two
        halves of frames) and the sources' inverse transforms run side by side on its threads
        (each writes its own part of the result).
        """
        est = wiener(stage.magnitudes, stage.mix_stft, niter=self.config.niter,
                     softmask=self.config.softmask, residual=self.config.residual,
                     eps=self.wiener_eps, window=self.wiener_window, mix_magnitude=stage.mix_magnitude,
                     run=pool.map if pool is not None else None)
        del stage.magnitudes, stage.mix_stft, stage.mix_magnitude
        length = stage.length
        # One source at a time (per thread): the inverse transform's frame buffer stays small.
        out = torch.empty(est.shape[0], est.shape[1], est.shape[2], length)

        def inverse(j: int) -> None:
            if est.device.type == "cpu" and est.real.dtype == out.dtype and length == stage.padded_length:
                self.stft.inverse(est[:, j], length, out=out[:, j])  # no copy after it
            else:
                out[:, j] = self.stft.inverse(est[:, j], stage.padded_length)[..., :length].float().cpu()

        if pool is None:
            for j in range(est.shape[1]):
                inverse(j)
        else:
            pool.map(inverse, range(est.shape[1]))
        return out

    def run(self, tracks: Iterable[TrackJob],
            on_batch: Callable[[int], None] | None = None, calls: CallQueue | None = None) -> None:
        """Separate tracks chunk by chunk, batching equal-length chunks across tracks.

        Tracks are pulled from ``tracks`` lazily. A :class:`CumxError` raised while reading a
        chunk or delivering an output fails that track only; the others go on. With
        ``overlap``, batch N's network runs in a worker thread while this thread finishes batch
        N - 1 and reads batch N + 1 (module docstring); the callbacks all run on this thread.
        Callbacks that the tracks put in ``calls`` (progress events) come out in the order that
        running without the overlap makes: those made while reading batch N + 1 after those of
        delivering batch N.
        """
        stages = _Stages(self, on_batch, calls or CallQueue())
        try:
            pending: list[tuple[TrackJob, int, torch.Tensor]] = []
            for track in tracks:
                for index in range(len(track.plan)):
                    try:
                        chunk = track.read_chunk(index)
                    except CumxError as exc:
                        track.fail(exc)
                        break
                    if pending and pending[0][2].shape[-1] != chunk.shape[-1]:
                        stages.submit(pending)
                    pending.append((track, index, chunk))
                    if len(pending) == self.batch_size:
                        stages.submit(pending)
            if pending:
                stages.submit(pending)
            stages.drain()
        finally:
            stages.close()

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


class CallQueue:
    """Callbacks held by :meth:`Separator.run` and run on its thread in the order described
    there; the tracks :meth:`put` their progress events here instead of calling them."""

    def __init__(self) -> None:
        self._calls: list[Callable[[], None]] = []

    def put(self, call: Callable[[], None]) -> None:
        self._calls.append(call)

    def take(self) -> list[Callable[[], None]]:
        """Remove and return the calls held so far."""
        calls, self._calls = self._calls, []
        return calls

    def run(self) -> None:
        """Run the held calls in order (also those they add)."""
        while self._calls:
            for call in self.take():
                call()


@dataclass
class _Estimates:
    """What the network stage hands to the filter stage, for one batch."""

    magnitudes: torch.Tensor  # (batch, source, channel, freq, frame) source magnitudes
    mix_stft: torch.Tensor  # (batch, channel, freq, frame) complex
    mix_magnitude: torch.Tensor  # |mix_stft|
    length: int  # samples per waveform
    padded_length: int  # samples the STFT saw (zero-padded when shorter than its window)


_Batch = list[tuple[TrackJob, int, torch.Tensor]]


class _Stages:
    """The two stages of :meth:`Separator.run`: batch N in the network (a worker thread when
    the separator overlaps) while the calling thread filters and delivers batch N - 1.

    At most one batch waits in the network and one is being filtered: memory stays bounded.
    """

    def __init__(self, separator: Separator, on_batch: Callable[[int], None] | None,
                 calls: CallQueue) -> None:
        self.separator = separator
        self.on_batch = on_batch
        self.calls = calls
        self.worker = (ThreadPoolExecutor(1, thread_name_prefix="cumx-network")
                       if separator.overlap else None)
        self.waiting: tuple[_Batch, Future[_Estimates]] | None = None

    def submit(self, pending: _Batch) -> None:
        """Start the network on the pending chunks (emptying ``pending``), then finish the
        batch before them."""
        live = [(t, i, c) for t, i, c in pending if not t.failed]
        pending.clear()
        if live:
            waves = torch.stack([c for _, _, c in live])
            if self.worker is None:  # one batch after the other
                self.calls.run()
                done: Future[_Estimates] = Future()
                done.set_result(self.separator._network(waves))
                self._deliver(live, done)
                self.calls.run()
                return
            previous, self.waiting = self.waiting, (live, self.worker.submit(
                self.separator._network, waves))
            self._deliver_before_reads(previous)

    def drain(self) -> None:
        """Finish the batch still in the network, if any."""
        previous, self.waiting = self.waiting, None
        self._deliver_before_reads(previous)

    def _deliver_before_reads(self, previous: tuple[_Batch, Future[_Estimates]] | None) -> None:
        """Deliver the previous batch; the calls made while reading since then come after its
        own (the order of a run without the overlap)."""
        reads = self.calls.take()
        if previous is not None:
            self._deliver(*previous)
        self.calls.run()
        for call in reads:
            call()

    def _deliver(self, live: _Batch, future: Future[_Estimates]) -> None:
        estimates = future.result()
        with intra_op_threads(self._filter_threads()):
            outputs = self.separator._filter(estimates, self._filter_pool())
        for (track, index, _), out in zip(live, outputs, strict=True):
            if track.failed:  # failed while this batch was in the network or being delivered
                continue
            try:
                track.add_output(index, out)
            except CumxError as exc:
                track.fail(exc)
        if self.on_batch is not None:
            self.on_batch(len(live))

    def _filter_threads(self) -> int:
        """Intra-op threads for filtering while the next batch is in the network on the CPU's
        source threads (which hold every core): half the cores, so that the two stages
        contend less (2 cores: one thread; a 3-minute file's whole ``separate`` took 5.77 s
        instead of 5.99 s, and 0.36 s less CPU time). This thread's own count otherwise: no
        batch in the network, one batch after the other, or not on a CPU. The stems are the
        same to rounding (a 26 s chunk: 2e-9 at most). No thread starts using torch while the
        count is changed (what :func:`intra_op_threads` asks): the network worker and the source
        threads did with the first batch, whose network ends before any filtering begins."""
        cores = torch.get_num_threads()
        if self.worker is None or self.waiting is None or self.separator._source_threads is None:
            return cores
        return max(1, cores // 2)

    def _filter_pool(self) -> SourceThreads | None:
        """The source threads, for filtering a batch side by side, when no batch is in the
        network (the last batch of a run, or one batch after the other): they are idle then,
        with one intra-op thread each, where the filter's own small operations barely gain
        from a second OpenMP thread (the last 26 s chunk of a 3-minute file, Open-Unmix
        weights: 0.30 s filtered with two intra-op threads, 0.14-0.15 s on the two source
        threads; X-UMX, whose chunk is one Wiener window that wiener splits in two halves of
        frames: 0.31 s, 0.145 s). ``None`` otherwise."""
        pool = self.separator._source_threads
        if pool is None or pool.workers < 2:
            return None
        return pool if self.worker is None or self.waiting is None else None

    def close(self) -> None:
        """Wait for the worker (an interrupted run leaves no thread behind using the model)."""
        self.waiting = None
        if self.worker is not None:
            self.worker.shutdown(wait=True, cancel_futures=True)


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
