"""Separate audio files to stem files, streaming: memory stays flat whatever the track length.

Per input file:

1. the header is checked (:func:`cumx_cli.engine.audio.io.probe`);
2. samples are decoded in blocks, resampled exactly to the model's rate
   (:class:`StreamResampler`) and given the model's channel count;
3. the separator pulls fixed-size chunks, batches them (across files too) and hands each
   chunk's stems back; the cross-faded samples that are final go to a float32 scratch, while
   the peak level is tracked. The scratch is memory for tracks whose stems fit in
   :data:`MEMORY_SCRATCH_BYTES` (a typical song) and a raw file per stem beyond that, so
   memory stays bounded whatever the length;
4. when the last chunk is in, each stem is read back, resampled to the output rate, scaled by
   the clip policy, encoded to a temporary name and renamed into place.

Scratch and temporary files are hidden (``.<name>.<pid>.raw`` / ``.part``) beside the final
file and removed on failure, so no half-written stem ever sits at a final path.
"""

from __future__ import annotations

import logging
import os
import string
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch

from cumx_cli.engine.audio.io import (
    AUDIO_SUFFIXES,
    AudioInfo,
    AudioWriter,
    OutputFormat,
    SampleType,
    probe,
    read_blocks,
    subtype_for,
)
from cumx_cli.engine.audio.resample import StreamResampler, resampled_length
from cumx_cli.engine.config import DEFAULT_SCRATCH_MIB, DEFAULT_TEMPLATE
from cumx_cli.engine.errors import AudioIOError, ConfigError, CumxError
from cumx_cli.engine.inference.chunking import OverlapAdd
from cumx_cli.engine.inference.separator import Separator

log = logging.getLogger(__name__)

#: Budget for holding separated stems in memory until a track is done (all open tracks
#: together). Tracks that do not fit use raw scratch files instead, which costs a write and a
#: read of every sample.
MEMORY_SCRATCH_BYTES = DEFAULT_SCRATCH_MIB * 2**20

ClipMode = Literal["rescale", "clamp", "none"]
Status = Literal["ok", "error", "skipped"]
_FIELDS = ("track", "name", "parent", "source", "ext")


@dataclass(frozen=True)
class OutputSpec:
    """Where and how stems are written.

    ``clip``: ``rescale`` divides every stem of a track by one common factor,
    ``max(1, 1.01 * peak)`` over the written stems, so nothing clips and the stems keep their
    relative levels (and still sum to the scaled mixture); it changes nothing when no stem
    exceeds full scale. ``clamp`` clips samples to [-1, 1]. ``none`` leaves float32 output
    untouched; integer and MP3 output is always clamped, since the encoder would wrap around.
    """

    outdir: Path = Path("separated")
    template: str = DEFAULT_TEMPLATE
    fmt: OutputFormat = "wav"
    dtype: SampleType = "int16"
    clip: ClipMode = "rescale"
    sample_rate: int | None = None
    stems: tuple[str, ...] | None = None
    skip_existing: bool = False
    scratch_memory: int = MEMORY_SCRATCH_BYTES

    def __post_init__(self) -> None:
        check_template(self.template)
        subtype_for(self.fmt, self.dtype)  # raises for impossible combinations (flac + float32)
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ConfigError(f"--sample-rate must be positive, got {self.sample_rate}")
        if self.scratch_memory < 0:
            raise ConfigError("--scratch-memory must be 0 or more MiB")


@dataclass
class TrackResult:
    """What happened to one input; ``outputs`` maps each written source to its file."""

    input: Path
    status: Status
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "input": str(self.input),
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "error": self.error,
        }


class Events:
    """Progress hooks; the default does nothing. The CLI overrides them to draw progress bars."""

    def track_started(self, path: Path, num_chunks: int) -> None: ...

    def chunk_done(self, path: Path) -> None: ...

    def track_finished(self, result: TrackResult) -> None: ...


def check_template(template: str) -> None:
    """Reject a filename template that is not usable for every source."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"--filename {template!r} is not a valid template ({exc})") from exc
    unknown = sorted(names - set(_FIELDS))
    if unknown:
        raise ConfigError(f"--filename {template!r} uses unknown field(s) {', '.join(unknown)}; "
                          "the fields are {track}, {name}, {parent}, {source} and {ext}")
    if "source" not in names:
        raise ConfigError(f"--filename {template!r} must contain {{source}}, or every stem "
                          "would get the same name")


@dataclass(frozen=True)
class InputFile:
    """An input and the track name used in output paths (relative path for folder inputs)."""

    path: Path
    track: str


def collect_inputs(paths: Iterable[Path]) -> list[InputFile]:
    """Expand folders recursively to their audio files (sorted); keep files as given.

    A path that does not exist is kept, so that it is reported as a failed input.
    """
    found: list[InputFile] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                           and not p.name.startswith("."))
            found.extend(InputFile(p, p.relative_to(path).with_suffix("").as_posix()) for p in files)
        else:
            found.append(InputFile(path, path.stem))
    return found


def shard(items: list[InputFile], spec: str) -> list[InputFile]:
    """The K-th of N shares of the inputs, ``spec`` being ``"K/N"`` (1 <= K <= N).

    Inputs are sorted by path and dealt round-robin (input i goes to share ``i % N + 1``), so
    the N shares differ in size by at most one and together hold every input exactly once,
    whichever machine computes them.
    """
    try:
        k_text, n_text = spec.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected K/N, e.g. 2/8") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {spec!r}: K must be between 1 and N")
    ordered = sorted(items, key=lambda item: str(item.path))
    return [item for i, item in enumerate(ordered) if i % n == k - 1]


def output_paths(item: InputFile, sources: Iterable[str], spec: OutputSpec) -> dict[str, Path]:
    """Final output path of each source for one input.

    Template fields: ``{track}`` (the file's name without suffix, or for files found in a
    folder input their path relative to it), ``{name}`` (the file name without suffix),
    ``{parent}`` (the name of the folder holding the file), ``{source}``, ``{ext}``.
    """
    fields = {"track": item.track, "name": item.path.stem, "parent": item.path.parent.name}
    return {src: spec.outdir / spec.template.format(**fields, source=src, ext=spec.fmt)
            for src in sources}


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Duplicate mono or average stereo so that ``x`` (..., channel, time) has ``channels``."""
    if x.shape[-2] == channels:
        return x
    if x.shape[-2] == 1:
        return x.expand(*x.shape[:-2], channels, x.shape[-1])
    return x.mean(dim=-2, keepdim=True)


class _FileTrack:
    """A :class:`TrackJob` that streams one file in and its stems out."""

    def __init__(self, item: InputFile, info: AudioInfo, outputs: dict[str, Path],
                 separator: Separator, spec: OutputSpec, events: Events,
                 budget: _ScratchBudget | None = None) -> None:
        budget = budget or _ScratchBudget(0)
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
        self._indices = [separator.sources.index(s) for s in outputs]
        self._peak = 0.0
        self._committed: list[Path] = []
        self._budget = budget
        size = len(outputs) * self.plan.length * info.channels * 4
        self._scratch: _MemoryScratch | _FileScratch
        if budget.take(size):
            self._scratch = _MemoryScratch(len(outputs), self.plan.length, info.channels)
            self._held = size
        else:
            self._held = 0
            self._scratch = _FileScratch(outputs, info.channels)
        # Folders this track creates: removed again (deepest first) if it fails and they are empty.
        self._new_dirs: list[Path] = []
        try:
            for path in outputs.values():
                missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
                path.parent.mkdir(parents=True, exist_ok=True)
                self._new_dirs += [d for d in missing if d not in self._new_dirs]
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
        self._buf = torch.cat([self._buf, _to_channels(out, self.separator.num_channels)], dim=-1)
        return True

    def read_chunk(self, index: int) -> torch.Tensor:
        start = self.plan.starts[index]
        end = start + self.plan.size
        while self._buf_start + self._buf.shape[-1] < end and self._pull():
            pass
        chunk = self._buf[:, start - self._buf_start : end - self._buf_start]
        if chunk.shape[-1] != self.plan.size:
            raise AudioIOError(f"{self.item.path}: the file ended early (truncated?)")
        keep = self.plan.starts[index + 1] if index + 1 < len(self.plan) else end
        self._buf = self._buf[:, keep - self._buf_start :].clone()
        self._buf_start = keep
        return chunk

    # -- output side --

    def add_output(self, index: int, output: torch.Tensor) -> None:
        done = self._ola.add(output[self._indices])  # (written source, model channel, n)
        done = _to_channels(done, self.info.channels)
        if done.numel():
            self._peak = max(self._peak, float(torch.linalg.vector_norm(done, ord=float('inf'))))
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
        scale = 1.0
        if self.spec.clip == "rescale":
            scale = 1.0 / max(1.0, 1.01 * self._peak)
        out_rate = self.spec.sample_rate or self.info.sample_rate
        for k, (src, final) in enumerate(self.outputs.items()):
            self._encode(k, final, out_rate, scale)
            self._committed.append(final)
            self._scratch.release(k)
        self._committed.clear()
        self._release_budget()
        self.result = TrackResult(self.item.path, "ok", dict(self.outputs),
                                  time.perf_counter() - self.started)
        self.events.track_finished(self.result)

    def _encode(self, index: int, final: Path, out_rate: int, scale: float) -> None:
        channels = self.info.channels
        resampler = StreamResampler(self.model_rate, out_rate)  # passes blocks through at equal rates
        with AudioWriter(final, out_rate, channels, self.spec.fmt, self.spec.dtype) as writer:
            for frames, last in self._scratch.blocks(index, 1 << 18):  # (time, channel)
                frames = resampler.push(frames.T, final=last).T
                if scale != 1.0:
                    frames = frames * scale
                if self.spec.clip == "clamp":
                    frames = frames.clamp(-1.0, 1.0)
                writer.write_frames(frames)
            writer.commit()

    def fail(self, error: CumxError) -> None:
        self.failed = True
        self._cleanup()
        self.result = TrackResult(self.item.path, "error", {}, time.perf_counter() - self.started,
                                  str(error))
        self.events.track_finished(self.result)

    def _cleanup(self) -> None:
        """Drop the scratch, delete any stem of this failed track already in place, and remove
        the folders it created if they are left empty."""
        self._scratch.discard()
        self._release_budget()
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

    def _release_budget(self) -> None:
        self._budget.give(self._held)
        self._held = 0


class _ScratchBudget:
    """Bytes of stems that open tracks may still hold in memory."""

    def __init__(self, available: int) -> None:
        self.available = available

    def take(self, size: int) -> bool:
        if size > self.available:
            return False
        self.available -= size
        return True

    def give(self, size: int) -> None:
        self.available += size


class _MemoryScratch:
    """A track's final stem samples, held in memory: (stem, time, channel) float32."""

    def __init__(self, stems: int, length: int, channels: int) -> None:
        self.data: torch.Tensor | None = torch.empty(stems, length, channels)
        self.filled = 0

    def open(self) -> None:
        pass

    def append(self, stems: torch.Tensor) -> None:
        """Shapes: stems (stem, channel, time)."""
        assert self.data is not None
        n = stems.shape[-1]
        self.data[:, self.filled : self.filled + n].copy_(stems.transpose(1, 2))
        self.filled += n

    def close(self) -> None:
        pass

    def blocks(self, index: int, frames: int) -> Iterator[tuple[torch.Tensor, bool]]:
        """Stem ``index`` in blocks of (time, channel), each with "is it the last" flag."""
        assert self.data is not None
        starts = range(0, max(self.filled, 1), frames)
        for start in starts:
            yield self.data[index, start : start + frames], start + frames >= self.filled

    def release(self, index: int) -> None:
        pass

    def discard(self) -> None:
        self.data = None


class _FileScratch:
    """A track's final stem samples in hidden raw float32 files beside the outputs, interleaved
    by frame (``.<name>.<pid>.raw``); deleted once encoded, or on failure."""

    def __init__(self, outputs: dict[str, Path], channels: int) -> None:
        self.paths = [path.with_name(f".{path.name}.{os.getpid()}.raw") for path in outputs.values()]
        self.channels = channels
        self.files: list[BinaryIO] = []

    def open(self) -> None:
        for path in self.paths:
            self.files.append(path.open("wb"))

    def append(self, stems: torch.Tensor) -> None:
        for file, stem in zip(self.files, stems):
            stem.T.contiguous().numpy().tofile(file)

    def close(self) -> None:
        for f in self.files:
            f.close()

    def blocks(self, index: int, frames: int) -> Iterator[tuple[torch.Tensor, bool]]:
        with self.paths[index].open("rb") as f:
            while True:
                data = np.fromfile(f, dtype=np.float32, count=frames * self.channels)
                last = data.size < frames * self.channels
                yield torch.from_numpy(data).view(-1, self.channels), last
                if last:
                    break

    def release(self, index: int) -> None:
        self.paths[index].unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        for path in self.paths:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def separate_files(separator: Separator, inputs: list[InputFile], spec: OutputSpec,
                   events: Events | None = None) -> list[TrackResult]:
    """Separate every input to stem files; a failing input does not stop the others.

    Returns one :class:`TrackResult` per input, in input order.
    """
    events = events or Events()
    sources = spec.stems or separator.sources
    unknown = [s for s in sources if s not in separator.sources]
    if unknown:
        raise ConfigError(f"unknown stem(s) {', '.join(unknown)}; this model has "
                          f"{', '.join(separator.sources)}")
    results: dict[int, TrackResult] = {}
    claimed: dict[Path, Path] = {}
    input_paths = {_real(i.path) for i in inputs}
    open_tracks: dict[int, _FileTrack] = {}
    budget = _ScratchBudget(spec.scratch_memory)

    def report(n: int, result: TrackResult) -> None:
        results[n] = result
        events.track_finished(result)

    def tracks() -> Iterator[_FileTrack]:
        for n, item in enumerate(inputs):
            try:
                outputs = output_paths(item, sources, spec)
                _check_outputs(item, outputs, input_paths, claimed)
                if spec.skip_existing and all(p.exists() for p in outputs.values()):
                    report(n, TrackResult(item.path, "skipped", outputs))
                    continue
                info = probe(item.path)
                track = _FileTrack(item, info, outputs, separator, spec, events, budget)
            except CumxError as exc:
                report(n, TrackResult(item.path, "error", error=str(exc)))
                continue
            open_tracks[n] = track
            events.track_started(item.path, len(track.plan))
            yield track

    try:
        separator.run(tracks())
    finally:
        for track in open_tracks.values():
            if track.result is None:  # interrupted: leave nothing behind
                track._cleanup()
    for n, track in open_tracks.items():
        if track.result is not None:
            results[n] = track.result
    return [results[n] for n in sorted(results)]


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _check_outputs(item: InputFile, outputs: dict[str, Path], inputs: set[Path],
                   claimed: dict[Path, Path]) -> None:
    for path in outputs.values():
        real = _real(path)
        if real in inputs:
            raise ConfigError(f"{item.path}: output {path} would overwrite an input file; "
                              "choose another -o/--output or --filename")
        if real in claimed and claimed[real] != item.path:
            raise ConfigError(f"{item.path}: output {path} is also the output of {claimed[real]}; "
                              "use a --filename template that keeps them apart")
    for path in outputs.values():
        claimed[_real(path)] = item.path
