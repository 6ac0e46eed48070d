"""``cumx separate``: split audio files into stems."""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cumx_cli import options
from cumx_cli.console import (
    EXIT_FAILED,
    EXIT_OK,
    CliState,
    command_state,
    error_line,
    flag_names,
    guard,
    stderr,
    warn_line,
)
from cumx_cli.engine.audio.formats import BITRATE_DEFAULTS, READ_FORMATS
from cumx_cli.engine.config import DEFAULT_SCRATCH_MIB, DEFAULT_TEMPLATE
from cumx_cli.engine.errors import ConfigError
from cumx_cli.options import CacheDir, Mirror, Offline

if TYPE_CHECKING:
    from rich.progress import TaskID

    from cumx_cli.engine.inference.inputs import InputFile
    from cumx_cli.engine.inference.outputs import OutputSpec
    from cumx_cli.engine.inference.pipeline import TrackResult


class Format(str, Enum):
    wav = "wav"
    flac = "flac"
    mp3 = "mp3"
    ogg = "ogg"
    opus = "opus"
    m4a = "m4a"


class OtherMethod(str, Enum):
    add = "add"
    minus = "minus"


class Dtype(str, Enum):
    int16 = "int16"
    int24 = "int24"
    float32 = "float32"


class Clip(str, Enum):
    rescale = "rescale"
    clamp = "clamp"
    none = "none"


class _CliEvents:
    """Progress bars (stderr, terminals only), one line per input, and ``--json`` output.

    Implements :class:`cumx_cli.engine.events.SeparateEvents` (a Protocol: importing this
    module, e.g. for ``--help``, does not import torch).
    """

    def __init__(self, state: CliState, progress: Progress | None, as_json: bool) -> None:
        self.state = state
        self.progress = progress
        self.as_json = as_json
        self.tasks: dict[Path, TaskID] = {}

    def track_started(self, path: Path, num_chunks: int) -> None:
        if self.progress is not None:
            self.tasks[path] = self.progress.add_task(path.name, total=num_chunks)

    def track_warning(self, path: Path, message: str) -> None:
        warn_line(message)

    def chunk_done(self, path: Path) -> None:
        if self.progress is not None and path in self.tasks:
            self.progress.advance(self.tasks[path])

    def track_finished(self, result: TrackResult) -> None:
        if self.progress is not None and result.input in self.tasks:
            self.progress.remove_task(self.tasks.pop(result.input))
        if result.status == "error":
            error_line(result.error or f"{result.input}: failed")
        elif result.status == "skipped":
            self.state.info(f"skipped {result.input} (outputs exist)")
        else:
            where = sorted({str(p.parent) for p in result.outputs.values()})
            self.state.info(f"[green]done[/] {result.input} -> {', '.join(where)} "
                            f"({len(result.outputs)} stems, {result.seconds:.1f} s)")
        if self.as_json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
            sys.stdout.flush()


def _parse_stems(stems: str | None) -> tuple[str, ...] | None:
    if stems is None:
        return None
    names = tuple(s.strip() for s in stems.split(",") if s.strip())
    if not names:
        raise ConfigError("--stems needs at least one source name, e.g. --stems vocals,drums")
    return names


def _check_before_loading(items: list[InputFile], spec: OutputSpec, events: _CliEvents) -> None:
    """Fail before the model loads (or downloads) when nothing could come of the run: the
    output folder cannot be written, or no input can be opened (each one is reported as the
    pipeline would: a line, and its ``--json`` object). Inputs that only some of fail are left
    to the pipeline, which reports them among the others.
    """
    import os

    from cumx_cli.engine.audio.io import probe
    from cumx_cli.engine.errors import CumxError
    from cumx_cli.engine.inference.outputs import check_output_folder
    from cumx_cli.engine.inference.pipeline import TrackResult

    check_output_folder(spec.outdir)
    failures = []
    for item in items:
        if os.access(item.path, os.R_OK):
            return
        try:
            probe(item.path)  # the reason, in the words the pipeline would use
        except CumxError as exc:
            failures.append(TrackResult(item.path, "error", error=str(exc), cause=exc))
        else:
            return
    for result in failures:
        events.track_finished(result)
    if len(items) > 1:
        error_line(f"{len(items)} of {len(items)} input(s) failed")
    raise typer.Exit(EXIT_FAILED)


def _parse_ext(ext: str | None) -> tuple[str, ...]:
    if ext is None:
        return ()
    names = tuple(f".{e.strip().lstrip('.').lower()}" for e in ext.split(",") if e.strip())
    if not names:
        raise ConfigError("--ext needs at least one suffix, e.g. --ext mp4,mkv")
    return names


def _progress(state: CliState) -> Progress | None:
    """Chunk progress bars on stderr, on terminals unless ``--quiet``."""
    if not state.live:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total} chunks"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=stderr, transient=True)


@guard
def separate_command(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(
        metavar="INPUT", help=f"Audio files ({READ_FORMATS}) or folders, searched recursively.",
        show_default=False, readable=False)],  # an unreadable input fails alone, not the run
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")] = Path("separated"),
    filename: Annotated[str, typer.Option(
        "--filename", help="Output path template under the output folder; fields {track}, "
        "{name}, {parent}, {source}, {ext}.")] = DEFAULT_TEMPLATE,
    model: options.Model = "xumx",
    niter: options.Niter = options.DEFAULT_NITER,
    wiener_window: options.WienerWindow = None,
    softmask: options.Softmask = False,
    residual: options.Residual = False,
    stems: Annotated[Optional[str], typer.Option(  # noqa: UP007 - typer needs Optional here
        help="Comma-separated sources to write, e.g. vocals,drums (all are still separated "
        "jointly).", show_default="all")] = None,
    device: options.Device = options.DEFAULT_DEVICE,
    chunk: options.Chunk = options.DEFAULT_CHUNK,
    overlap: options.Overlap = options.DEFAULT_OVERLAP,
    batch_size: options.BatchSize = options.DEFAULT_BATCH_SIZE,
    two_stems: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--two-stems", metavar="SOURCE", help="Write two stems: SOURCE and no_SOURCE (e.g. "
        "--two-stems vocals: vocals.wav and the instrumental, no_vocals.wav).",
        show_default=False)] = None,
    other_method: Annotated[OtherMethod, typer.Option(
        "--other-method", help="How --two-stems makes no_SOURCE: add (the sum of the other "
        "separated sources) or minus (the mixture minus SOURCE).")] = OtherMethod.add,
    fmt: Annotated[Format, typer.Option(
        "--format", help="Output format (m4a is AAC; mp3, ogg, opus and m4a take "
        "--bitrate).")] = Format.wav,
    bitrate: Annotated[Optional[int], typer.Option(  # noqa: UP007
        "--bitrate", metavar="KBPS", help=f"Bitrate of lossy output, kbps ({BITRATE_DEFAULTS}).",
        show_default=False)] = None,
    dtype: Annotated[Dtype, typer.Option(
        help="Sample type of wav output (int16, int24, float32) and flac output (int16, "
        "int24); mp3 ignores it.")] = Dtype.int16,
    clip: Annotated[Clip, typer.Option(
        help="rescale: one gain for all stems of a track, only if a stem exceeds full scale; "
        "clamp: clip samples; none: leave float32 untouched.")] = Clip.rescale,
    sample_rate: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="Output sample rate in Hz.", show_default="the input's")] = None,
    shard: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--shard", metavar="K/N", help="Process only the K-th of N shares of the inputs (sorted, "
        "dealt round-robin): split a big folder across machines or GPUs.",
        show_default=False)] = None,
    scratch_memory: Annotated[int, typer.Option(
        "--scratch-memory", metavar="MIB", envvar="CUMX_SCRATCH_MEMORY", min=0,
        help="Hold up to this many MiB of separated stems in memory until a track is encoded; "
        "longer tracks use hidden scratch files beside the outputs (0: always files).")
    ] = DEFAULT_SCRATCH_MIB,
    ext: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--ext", metavar="EXT,...", help="More suffixes to pick up in folders, e.g. mp4,mkv "
        "(video files are separated when named, and in folders only when listed here).",
        show_default=False)] = None,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Skip inputs whose stems all exist already.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per input on stdout.")] = False,
    quiet: options.Quiet = False,
    verbose: options.Verbose = False,
    cache_dir: CacheDir = None,
    offline: Offline = False,
    mirror: Mirror = None,
) -> None:
    """Separate audio files into stems: OUTPUT/<track>/<source>.<ext>.

    Exit status: 0 when every input succeeded or was skipped; 1 when any failed (the others are still processed); 2 for usage errors.
    """
    from rich.markup import escape

    from cumx_cli.engine.inference.inputs import find_inputs
    from cumx_cli.engine.inference.inputs import shard as shard_inputs
    from cumx_cli.engine.inference.outputs import OutputSpec
    from cumx_cli.engine.inference.pipeline import separate_files
    from cumx_cli.engine.inference.separator import Separator

    state = command_state(ctx, verbose=verbose, quiet=quiet)
    inference = options.inference_config(chunk_seconds=chunk, overlap_seconds=overlap, batch_size=batch_size,
                                niter=niter, softmask=softmask, residual=residual, device=device,
                                wiener_window=wiener_window)
    with flag_names({"bitrate": "--bitrate"}):
        spec = OutputSpec(outdir=output, template=filename, fmt=fmt.value, dtype=dtype.value,
                          clip=clip.value, sample_rate=sample_rate, stems=_parse_stems(stems),
                          two_stems=two_stems, other_method=other_method.value, bitrate=bitrate,
                          skip_existing=skip_existing,
                          scratch_memory_bytes=scratch_memory * 2**20)
    found = find_inputs(inputs, output, _parse_ext(ext))
    for folder in found.musdb:
        state.info(escape(folder.describe()))
    items = found.files
    if not items:
        raise ConfigError("no audio files found in the given folder(s)")
    if shard is not None:
        items = shard_inputs(items, shard)
        if not items:
            state.info(f"shard {shard}: no inputs in this share")
            raise typer.Exit(EXIT_OK)

    _check_before_loading(items, spec, _CliEvents(state, None, as_json))
    separator = Separator(options.load_model(model, cache_dir, offline, mirror, state), inference)
    state.info(f"model {model} ({', '.join(separator.sources)}) on {separator.device}; "
               f"{len(items)} input(s) -> {output}")
    progress = _progress(state)
    with progress if progress is not None else contextlib.nullcontext():
        results = separate_files(separator, items, spec, _CliEvents(state, progress, as_json))
    failed = sum(r.status == "error" for r in results)
    if failed and len(results) > 1:
        error_line(f"{failed} of {len(results)} input(s) failed")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
