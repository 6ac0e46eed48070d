"""``cumx eval``: BSSEval v4 scores of a model, or of stems on disk, on a MUSDB18-HQ folder."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cumx_cli import options
from cumx_cli.console import (
    EXIT_FAILED,
    EXIT_OK,
    CliState,
    command_state,
    error_line,
    flag_names,
    guard,
    warn_line,
)
from cumx_cli.engine.config import EvalConfig, InferenceConfig
from cumx_cli.engine.errors import ConfigError, EvaluationError
from cumx_cli.options import CacheDir, Mirror, Offline

if TYPE_CHECKING:
    from cumx_cli.engine.data.musdb import TrackFolder
    from cumx_cli.engine.evaluation.estimators import Estimator, Record, SeparatorEstimator
    from cumx_cli.engine.evaluation.runner import TrackResult
    from cumx_cli.engine.model import CrossUMX


#: The flag of each ``EvalConfig`` field that ``eval`` sets, for the engine's errors.
FLAGS = {"backend": "--backend"}


class Subset(str, Enum):
    test = "test"
    train = "train"


class Backend(str, Enum):
    fast = "fast"
    museval = "museval"


class _CliEvents:
    """One line per track on stderr (duck-typed ``runner.Events``)."""

    def __init__(self, total: int, state: CliState) -> None:
        self.total = total
        self.state = state
        self.done = 0
        self.plotting_preloaded = False

    def track_started(self, track: TrackFolder) -> None:
        pass

    def track_scoring(self, track: TrackFolder) -> None:
        if not self.plotting_preloaded:  # once the first track is read: see preload_plotting
            from cumx_cli.engine.evaluation import report

            self.plotting_preloaded = True
            report.preload_plotting()

    def track_finished(self, result: TrackResult) -> None:
        self.done += 1
        where = f"[{self.done}/{self.total}]"
        if result.status == "error":
            error_line(result.error or f"track {result.track!r}: failed")
        elif result.status == "skipped":
            self.state.info(f"{where} skipped {result.track} (scored already: "
                            f"{result.json_path}; --force to redo)")
        else:
            self.state.info(f"{where} [green]scored[/] {result.track} ({result.seconds:.1f} s)")

    def track_warning(self, track: TrackFolder, message: str) -> None:
        warn_line(message)


@guard
def eval_command(
    ctx: typer.Context,
    musdb: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--musdb", envvar="MUSDB_PATH", help="MUSDB18-HQ root (ROOT/{train,test}/<track>/"
        "{mixture,vocals,drums,bass,other}.wav) or MUSDB18 root (ROOT/{train,test}/"
        "<track>.stem.mp4).", exists=True, file_okay=False, dir_okay=True,
        show_default=False)] = None,
    subset: Annotated[Subset, typer.Option(help="Which subset to score.")] = Subset.test,
    model: Annotated[Optional[str], typer.Option(  # noqa: UP007 - typer needs Optional here
        "-m", "--model", help="Separate each track's mixture with this model (a checkpoint "
        "path or a published name) and score the stems.", show_default=False)] = None,
    estimates: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--estimates", help="Score stems already on disk instead: DIR/<track>/<source>.wav.",
        exists=True, file_okay=False, dir_okay=True, show_default=False)] = None,
    out: Annotated[Path, typer.Option(
        "-o", "--out", help="Output folder: <subset>/<track>.json (museval format), "
        "summary.txt/.json, scores.csv, boxplot_<source>.png.")] = Path("eval"),
    tracks: Annotated[Optional[list[str]], typer.Option(  # noqa: UP007
        "--tracks", help="Only this track (repeat for more).", show_default="all")] = None,
    backend: Annotated[Backend, typer.Option(
        help="fast: cumx's BSSEval v4 in torch; museval: the museval package itself.")
    ] = Backend.fast,
    force: Annotated[bool, typer.Option(
        "--force", help="Score tracks again even if their JSON exists.")] = False,
    niter: options.Niter = options.DEFAULT_NITER,
    wiener_window: options.WienerWindow = None,
    softmask: options.Softmask = False,
    residual: options.Residual = False,
    device: options.Device = options.DEFAULT_DEVICE,
    chunk: options.Chunk = options.DEFAULT_CHUNK,
    overlap: options.Overlap = options.DEFAULT_OVERLAP,
    batch_size: options.BatchSize = options.DEFAULT_BATCH_SIZE,
    quiet: options.Quiet = False,
    verbose: options.Verbose = False,
    cache_dir: CacheDir = None,
    offline: Offline = False,
    mirror: Mirror = None,
) -> None:
    """Score separations with BSSEval v4 (museval's SDR/SIR/ISR/SAR, 1 s frames).

    Prints the median over frames, then over tracks, per source and their average (with the published scores of a registered model beside them when they were measured on the same set, MUSDB18 or MUSDB18-HQ; else one line saying so), and the global SDR (MDX 2021: one number per track) per source, mean and median over tracks. A track whose estimates are shifted in time against its references gets one warning line naming the lag (its scores are unchanged). Tracks already scored are skipped unless --force, when their score files record the same model (and its sha256) or estimates folder and the same options; files made by something else are scored again.

    Exit status: 0 when every track was scored or skipped; 1 when any failed (the others are still scored); 2 for usage errors.
    """
    from cumx_cli.engine.data.musdb import MUSDB_TARGETS, find_tracks
    from cumx_cli.engine.device import resolve_device
    from cumx_cli.engine.evaluation import estimators, report, runner
    from cumx_cli.engine.inference.outputs import check_output_folder

    state = command_state(ctx, verbose=verbose, quiet=quiet)
    if musdb is None:
        raise ConfigError("no data set: give --musdb ROOT or set MUSDB_PATH")
    if (model is None) == (estimates is None):
        raise ConfigError("give either --model M (separate, then score) or --estimates DIR "
                          "(score stems on disk), not both or neither")
    with flag_names(FLAGS):
        config = EvalConfig(backend=backend.value)
    eval_device = resolve_device(device, float64=True)  # BSSEval computes in float64
    selected = find_tracks(musdb, subset.value, tracks or None)
    check_output_folder(out)  # before a model loads (or downloads) only to fail at the first score
    estimator: Estimator
    if estimates is not None:
        estimator = estimators.EstimatesFolder(estimates, config.max_length_mismatch_seconds)
        sources: tuple[str, ...] = MUSDB_TARGETS
        what = f"stems in {estimates}"
    else:
        inference = options.inference_config(chunk_seconds=chunk, overlap_seconds=overlap,
                                    batch_size=batch_size, niter=niter, softmask=softmask,
                                    residual=residual, device=device,
                                    wiener_window=wiener_window)  # checked before loading
        from cumx_cli.engine.weights.resolver import load_model

        path = options.model_path(model or "", cache_dir, offline, mirror, state)
        loaded = load_model(path)  # a bad checkpoint fails here, before its files are hashed
        record = estimators.model_record(model or "", estimators.model_files(path), inference)
        estimator, sources = _separator_estimator(model or "", loaded, inference, record)
        what = f"model {model}"
    state.info(f"scoring {what} on {len(selected)} {subset.value} track(s) with the "
               f"{backend.value} backend on {eval_device}: {', '.join(sources)} -> {out}")
    results = runner.evaluate_tracks(selected, sources, estimator, out, config, force=force,
                                     device=eval_device, events=_CliEvents(len(selected), state))
    failed = sum(r.status == "error" for r in results)
    replaced = sum(r.replaced for r in results)
    if replaced:
        state.info(f"{replaced} track(s) scored again: their score files in {out} were made by "
                   "something else (another model or estimates folder, other options)")
    if any(r.frames for r in results):
        summary = report.summarize(results, sources)
        published = report.published_scores(model)
        dataset = report.dataset_of_layout(report.layout_of(selected))  # what is scored here
        table = report.format_table(summary, published, dataset)
        sys.stdout.write(table)
        paths = report.write_reports(summary, out, published, dataset)
        try:
            report.write_boxplots(summary, out)
        except report.PlotsUnavailable as exc:
            warn_line(str(exc))
        state.info(f"summary: {paths['summary']}, {paths['csv']}")
    if failed and len(results) > 1:  # one track: its own error line says it all
        error_line(f"{failed} of {len(results)} track(s) failed")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _separator_estimator(model: str, loaded: CrossUMX, inference: InferenceConfig,
                         record: Record) -> tuple[SeparatorEstimator, tuple[str, ...]]:
    from cumx_cli.engine.data.musdb import MUSDB_TARGETS
    from cumx_cli.engine.evaluation.estimators import SeparatorEstimator
    from cumx_cli.engine.inference.separator import Separator

    separator = Separator(loaded, inference)
    sources = tuple(s for s in MUSDB_TARGETS if s in separator.sources)
    if len(sources) < 2:
        raise EvaluationError(f"model {model} separates {', '.join(separator.sources)}; "
                              "BSSEval needs two or more of vocals, drums, bass, other")
    return SeparatorEstimator(separator, record), sources
