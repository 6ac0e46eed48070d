"""Separate audio files to stem files, streaming: memory stays flat whatever the track length.

Per input file:

1. the header is checked (:func:`cumx_cli.engine.audio.io.probe`);
2. samples are decoded in blocks, resampled exactly to the model's rate
   (:class:`StreamResampler`) and given the model's channel count;
3. the separator pulls fixed-size chunks, batches them (across files too) and hands each
   chunk's stems back; the cross-faded samples that are final go to a scratch
   (:mod:`.scratch`: memory for a typical song, raw files beyond the budget), while the peak
   level is tracked;
4. when the last chunk is in, each stem is read back, resampled to the output rate, scaled by
   the clip policy (:mod:`.outputs`), encoded to a temporary name and renamed into place.

The inputs come from :mod:`.inputs`. Scratch and temporary files are hidden
(``.<name>.<host>.<pid>.raw`` / ``.part``) beside the final file and removed on failure, so no
half-written stem ever sits at a final path; those that a killed run (SIGKILL, power loss) left
in a track's folders are removed when a later run writes there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from cumx_cli.engine.audio.channels import match_channels
from cumx_cli.engine.audio.encode import read_tags, stem_tags
from cumx_cli.engine.audio.io import AudioInfo, probe, read_blocks
from cumx_cli.engine.audio.resample import StreamResampler, duration_length, resampled_length
from cumx_cli.engine.errors import AudioIOError, CumxError
from cumx_cli.engine.events import NoSeparateEvents, SeparateEvents
from cumx_cli.engine.files import remove_stale_scratch
from cumx_cli.engine.inference.chunking import OverlapAdd
from cumx_cli.engine.inference.inputs import InputFile
from cumx_cli.engine.inference.outputs import (
    OutputClaims,
    OutputSpec,
    StemPlan,
    apply_clip,
    clip_gain,
    open_writer,
    output_paths,
    stem_plan,
    stored_rate,
)
from cumx_cli.engine.inference.scratch import ScratchBudget, open_scratch
from cumx_cli.engine.inference.separator import RESIDUAL, CallQueue, Separator

log = logging.getLogger(__name__)

Status = Literal["ok", "error", "skipped"]
#: Samples per block when a stem is read back from its scratch and encoded.
_ENCODE_BLOCK = 1 << 18


@dataclass
class TrackResult:
    """What happened to one input; ``outputs`` maps each written source to its file.

    A failed input has its message in ``error`` and the exception itself in ``cause`` (for
    callers that raise it again; it is not part of :meth:`to_dict`).
    """

    input: Path
    status: Status
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    cause: CumxError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "input": str(self.input),
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "error": self.error,
        }


def _make_folders(outputs: dict[str, Path], created: list[Path]) -> None:
    """Create the outputs' folders, adding to ``created`` each one that did not exist (also
    when a later one fails), so that a failed track can remove them again."""
    for path in outputs.values():
        missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        created += [d for d in missing if d not in created]


class _Leftovers:
    """Removes what killed runs left in the output folders (their scratch can be gigabytes),
    once per folder and run: many tracks may share one folder (``--filename``).

    Only files of this host's processes that no longer run go
    (:func:`~cumx_cli.engine.files.remove_stale_scratch`); a removal never fails a track.
    """

    def __init__(self) -> None:
        self._done: set[Path] = set()

    def remove(self, outputs: dict[str, Path]) -> None:
        for folder in dict.fromkeys(path.parent for path in outputs.values()):
            if folder not in self._done:
                self._done.add(folder)
                remove_stale_scratch(folder)


class _FileTrack:
    """A :class:`~cumx_cli.engine.inference.separator.TrackJob` that streams one file in and
    its stems out."""

    def __init__(self, item: InputFile, info: AudioInfo, outputs: dict[str, Path],
                 stems: StemPlan, separator: Separator, spec: OutputSpec, events: SeparateEvents,
                 budget: ScratchBudget, leftovers: _Leftovers,
                 register: Callable[[_FileTrack], None]) -> None:
        self.item, self.info, self.outputs = item, info, outputs
        self.separator, self.spec, self.events = separator, spec, events
        self.model_rate = separator.sample_rate
        self.plan = separator.plan(resampled_length(info.frames, info.sample_rate, self.model_rate))
        self.failed = False
        self.result: TrackResult | None = None
        self.started = time.perf_counter()
        self._blocks: Iterator[torch.Tensor] | None = read_blocks(info)
        self._resampler = StreamResampler(info.sample_rate, self.model_rate)
        self._buf = torch.zeros(separator.num_channels, 0)
        self._buf_start = 0
        self._ola = OverlapAdd(self.plan)
        self.stems = stems
        # Mixture chunks kept from read_chunk to add_output, for stems made with the mixture.
        self._mixtures: dict[int, torch.Tensor] = {}
        self._peak = 0.0
        self._committed: list[Path] = []
        self._scratch = open_scratch(budget, outputs, self.plan.length, info.channels)
        # Folders this track creates: removed again (deepest first) if it fails and they are empty.
        self._new_dirs: list[Path] = []
        # Registered before it creates anything, so that an interruption from here on (a signal
        # lands between any two bytecodes) finds it among the open tracks and cleans it up.
        register(self)
        try:
            _make_folders(outputs, self._new_dirs)
            leftovers.remove(outputs)
            self._scratch.open()
        except OSError as exc:
            self._cleanup()
            where = outputs[next(iter(outputs))].parent
            raise AudioIOError(f"{item.path}: cannot write to {where} ({exc.strerror or exc})") from exc

    # -- input side --

    def _pull(self) -> bool:
        """Decode, resample and append one more block; False at the end of the file."""
        if self._blocks is None:
            return False
        try:
            block = next(self._blocks)
            out = self._resampler.push(block)
        except StopIteration:
            self._blocks = None
            out = self._resampler.push(torch.zeros(self.info.channels, 0), final=True)
        self._buf = torch.cat([self._buf, match_channels(out, self.separator.num_channels)], dim=-1)
        return True

    def read_chunk(self, index: int) -> torch.Tensor:
        start = self.plan.starts[index]
        end = start + self.plan.size
        while self._buf_start + self._buf.shape[-1] < end and self._pull():
            pass
        chunk = self._buf[:, start - self._buf_start : end - self._buf_start]
        if chunk.shape[-1] != self.plan.size:
            raise AudioIOError(f"{self.item.path}: the file ended early (truncated?)")
        if self.stems.needs_mixture:
            self._mixtures[index] = chunk
        keep = self.plan.starts[index + 1] if index + 1 < len(self.plan) else end
        self._buf = self._buf[:, keep - self._buf_start :].clone()
        self._buf_start = keep
        return chunk

    # -- output side --

    def add_output(self, index: int, output: torch.Tensor) -> None:
        stems = self.stems.apply(output, self._mixtures.pop(index, None))
        done = self._ola.add(stems)  # (written stem, model channel, n)
        done = match_channels(done, self.info.channels)
        if done.numel():  # max |x| from one min/max pass (a fifth of vector_norm's time)
            low, high = torch.aminmax(done)
            self._peak = max(self._peak, -float(low), float(high))
        try:
            self._scratch.append(done)
        except OSError as exc:
            where = next(iter(self.outputs.values())).parent
            raise AudioIOError(f"{where}: writing scratch files failed ({exc.strerror or exc})") from exc
        self.events.chunk_done(self.item.path)
        if index == len(self.plan) - 1:
            self._finish()

    def _finish(self) -> None:
        self._scratch.close()
        gain = clip_gain(self.spec.clip, self._peak)
        out_rate = stored_rate(self.spec, self.info.sample_rate)
        tags = read_tags(self.item.path)

        def encode(k: int, stem: str, final: Path, stop: threading.Event) -> None:
            self._encode(k, final, out_rate, gain, stem_tags(tags, stem, self.item.track), stop)
            self._committed.append(final)  # the cleanup after a failure removes it again
            self._scratch.release(k)

        calls = [functools.partial(encode, k, stem, final)
                 for k, (stem, final) in enumerate(self.outputs.items())]
        _side_by_side(calls, torch.get_num_threads())
        self._committed.clear()
        self._scratch.discard()
        self.result = TrackResult(self.item.path, "ok", dict(self.outputs),
                                  time.perf_counter() - self.started)
        self.events.track_finished(self.result)

    def _encode(self, index: int, final: Path, out_rate: int, gain: float,
                tags: dict[str, str], stop: threading.Event) -> None:
        channels = self.info.channels
        resampler = StreamResampler(self.model_rate, out_rate)  # passes blocks through at equal rates
        # The input's duration at the output rate: the rates' round trip may add a sample or two.
        left = duration_length(self.info.frames, self.info.sample_rate, out_rate)
        with open_writer(final, out_rate, channels, self.spec, tags) as writer:
            for frames, last in self._scratch.blocks(index, _ENCODE_BLOCK):  # (time, channel)
                if stop.is_set():
                    raise _Stopped
                frames = resampler.push(frames.T, final=last).T[:left]
                left -= frames.shape[0]
                writer.write_frames(apply_clip(frames, self.spec.clip, gain))
            if left > 0:  # not expected: the resampler gives at least the duration
                writer.write_frames(torch.zeros(left, channels))
            if stop.is_set():
                raise _Stopped
            writer.commit()

    def fail(self, error: CumxError) -> None:
        self.failed = True
        self._cleanup()
        self.result = TrackResult(self.item.path, "error", {}, time.perf_counter() - self.started,
                                  str(error), error)
        self.events.track_finished(self.result)

    def _cleanup(self) -> None:
        """Drop the scratch, delete any stem of this failed track already in place, and remove
        the folders it created if they are left empty."""
        self._scratch.discard()
        for path in self._committed:
            try:
                path.unlink(missing_ok=True)
            except OSError:  # e.g. the parent is not a folder: then nothing was written there
                pass
        self._committed.clear()
        self._blocks = None
        for folder in sorted(self._new_dirs, key=lambda d: len(d.parts), reverse=True):
            try:
                folder.rmdir()  # only if empty: another track's stems or the user's files stay
            except OSError:
                pass
        self._new_dirs.clear()


class _Stopped(Exception):
    """Raised in an encoding thread that :func:`_side_by_side` told to stop."""


def _side_by_side(calls: Sequence[Callable[[threading.Event], None]], cores: int) -> None:
    """Run ``calls`` (a track's stem encodings), each given a stop event, on up to ``cores``
    threads with one intra-op thread each, and return when all have ended.

    If one raises, or this thread is interrupted (a signal lands here as an exception), the
    others are told to stop, they end at their next block without renaming anything into
    place, and only then is the first error (the one that stopped the others) raised: so the
    track's cleanup never races a stem being committed. The threads are started with the
    termination signals blocked here, so that a signal cannot land inside a thread's start
    and leave that thread unaccounted for (a pool's ``submit`` could: it starts threads).
    With one core, or one call, they run here one after the other.

    At the end of a 3-minute track on 2 cores the four 16-bit WAV stems took 0.27-0.28 s
    instead of 0.46-0.48 s (most of it is the kernel giving the new files page-cache pages).
    While a batch is in the network the separator filters with one thread (its
    ``_filter_threads``), so this thread has one and a folder's earlier tracks are encoded
    here, one stem after the other, as before.
    """
    stop = threading.Event()
    workers = min(len(calls), cores)
    if workers < 2:
        for call in calls:
            call(stop)
        return
    each = max(1, cores // workers)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(calls)):
        todo.put(index)
    failures: list[BaseException] = []  # in the order they happened; _Stopped is not one

    # Each worker sets its event when it ends. Waiting on those, not on Thread.join: a join
    # that a signal interrupts can leave the thread marked as ended while it runs (CPython 3.11).
    ended = [threading.Event() for _ in range(workers)]

    def work(k: int) -> None:
        try:
            torch.get_num_threads()  # torch sets a new thread's count on first use: ask first
            torch.set_num_threads(each)
            while not stop.is_set():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    calls[index](stop)
                except _Stopped:
                    pass
                except BaseException as exc:  # handed to the caller, who raises the first
                    failures.append(exc)
                    stop.set()
        finally:
            ended[k].set()

    threads = [threading.Thread(target=work, args=(k,), name=f"cumx-encode_{k}", daemon=True)
               for k in range(workers)]
    try:
        with _signals_blocked():
            for thread in threads:
                thread.start()
        for event in ended:
            event.wait()
    except BaseException:
        stop.set()
        raise
    finally:
        for thread, event in zip(threads, ended, strict=True):
            if thread.ident is not None:  # started
                event.wait()
        torch.set_num_threads(cores)  # set_num_threads in a worker also set the default of
        # threads that start using torch later: put this thread's count back as that default
    if failures:
        raise failures[0]


#: The signals that end a ``cumx`` run by raising in the main thread (Ctrl-C, and the
#: command's SIGTERM/SIGHUP handler).
_INTERRUPTS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                    if hasattr(signal, name))


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold back the interrupting signals in the calling thread for the block (threads started
    in it inherit the mask: they never receive them); one that arrives meanwhile is raised as
    soon as the block ends. Where the platform has no signal masks, nothing is held back."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _QueuedEvents:
    """:class:`SeparateEvents` that go through the separator's :class:`CallQueue`, so that the
    overlap of the separator's stages does not change their order."""

    def __init__(self, events: SeparateEvents, calls: CallQueue) -> None:
        self.events, self.calls = events, calls

    def track_started(self, path: Path, num_chunks: int) -> None:
        self.calls.put(lambda: self.events.track_started(path, num_chunks))

    def chunk_done(self, path: Path) -> None:
        self.calls.put(lambda: self.events.chunk_done(path))

    def track_finished(self, result: TrackResult) -> None:
        self.calls.put(lambda: self.events.track_finished(result))

    def track_warning(self, path: Path, message: str) -> None:
        self.calls.put(lambda: self.events.track_warning(path, message))


def separate_files(separator: Separator, inputs: list[InputFile], spec: OutputSpec,
                   events: SeparateEvents | None = None) -> list[TrackResult]:
    """Separate every input to stem files; a failing input does not stop the others.

    Inputs are opened one after another as the separator asks for more chunks, so several may
    be open at once (their chunks share batches). An interruption (a ``KeyboardInterrupt``:
    Ctrl-C, or SIGTERM/SIGHUP under the ``cumx`` command) removes what the open tracks wrote.

    Returns:
        One :class:`TrackResult` per input, in input order.

    Raises:
        ConfigError: ``spec.stems`` names a source the separator does not have.
    """
    calls = CallQueue()
    events = _QueuedEvents(events or NoSeparateEvents(), calls)
    stems = stem_plan(spec, separator.sources, RESIDUAL if separator.config.residual else None)
    results: dict[int, TrackResult] = {}
    claims = OutputClaims(inputs)
    open_tracks: dict[int, _FileTrack] = {}
    budget = ScratchBudget(spec.scratch_memory_bytes)
    leftovers = _Leftovers()

    def tracks() -> Iterator[_FileTrack]:
        for n, item in enumerate(inputs):
            def register(track: _FileTrack, n: int = n) -> None:
                open_tracks[n] = track

            try:
                track = _open_track(item, stems, spec, separator, events, claims, budget,
                                    leftovers, register)
            except CumxError as exc:
                open_tracks.pop(n, None)  # cleaned up already when opening it failed
                track = TrackResult(item.path, "error", error=str(exc), cause=exc)
            if isinstance(track, TrackResult):  # failed or skipped before any work
                results[n] = track
                events.track_finished(track)
                continue
            events.track_started(item.path, len(track.plan))
            yield track

    try:
        separator.run(tracks(), calls=calls)
    finally:
        for track in open_tracks.values():
            if track.result is None:  # interrupted: leave nothing behind
                track._cleanup()
    for n, track in open_tracks.items():
        if track.result is not None:
            results[n] = track.result
    return [results[n] for n in sorted(results)]


def _open_track(item: InputFile, stems: StemPlan, spec: OutputSpec,
                separator: Separator, events: SeparateEvents, claims: OutputClaims,
                budget: ScratchBudget, leftovers: _Leftovers,
                register: Callable[[_FileTrack], None]) -> _FileTrack | TrackResult:
    """The track job of one input, or its ``skipped`` result when its stems all exist.

    Raises:
        CumxError: the outputs collide, or the input cannot be opened or its folder written.
    """
    outputs = output_paths(item, stems.names, spec)
    claims.claim(item, outputs)
    if spec.skip_existing and all(p.exists() for p in outputs.values()):
        return TrackResult(item.path, "skipped", outputs)
    info = probe(item.path)
    downmixed = getattr(info, "downmixed_from", None)
    if downmixed:
        events.track_warning(item.path, f"{item.path}: {downmixed}-channel audio downmixed to "
                             "stereo (FFmpeg's default matrix: centre and surrounds at -3 dB, "
                             "LFE dropped)")
    return _FileTrack(item, info, outputs, stems, separator, spec, events, budget, leftovers,
                      register)
