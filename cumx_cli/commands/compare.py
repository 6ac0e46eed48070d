"""``cumx compare``: several runs' BSSEval scores side by side (the paper's Table 1 layout)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cumx_cli.console import command_state, flag_names, guard, warn_line

#: The flag of each engine field that ``compare`` sets, for the engine's errors.
FLAGS = {"names": "--names"}


class Metric(str, Enum):
    SDR = "SDR"
    SIR = "SIR"
    ISR = "ISR"
    SAR = "SAR"


@guard
def compare_command(
    ctx: typer.Context,
    runs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR", help="Score folders, two or more, the reference run first: a `cumx eval --out` folder (its test/ subfolder is read), a subset folder of <track>.json files, or any folder in museval's per-track JSON format.",
        exists=True, file_okay=False, dir_okay=True, show_default=False)],
    metric: Annotated[Metric, typer.Option(
        "--metric", help="The metric of the table and the plot.")] = Metric.SDR,
    names: Annotated[Optional[str], typer.Option(  # noqa: UP007 - typer needs Optional here
        "--names", help="Comma-separated run names, one per RUN_DIR.",
        show_default="the folders' names")] = None,
    subset: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--subset", help="Read RUN_DIR/SUBSET in every run.",
        show_default="test/ if there, else the one subset folder")] = None,
    out: Annotated[Path, typer.Option(
        "-o", "--out", help="Output folder: compare_<metric>.txt and .png, compare.csv, compare.json.")
    ] = Path("compare"),
) -> None:
    """Compare runs scored on one test set: per source and avg, the median over tracks of each run's scores, then each run's paired per-track differences to the first run with how many tracks improve; and one box plot.

    Tracks are compared where every run scored them, sources where every run has them; one line says what was left out. The aggregation is that of cumx eval (median over frames, then median over tracks; avg: the mean over sources).

    Exit status: 0 when compared; 1 for unusable score folders (none, unreadable, no common track); 2 for usage errors.
    """
    from cumx_cli.engine.evaluation import compare, report
    from cumx_cli.engine.inference.outputs import check_output_folder

    state = command_state(ctx)
    run_names = None if names is None else [n.strip() for n in names.split(",")]
    check_output_folder(out)
    with flag_names(FLAGS):
        comparison = compare.compare_folders(runs, run_names, subset)
    for note in compare.left_out_notes(comparison):
        warn_line(note)
    sys.stdout.write(compare.format_table(comparison, metric.value))
    paths = compare.write_reports(comparison, out, metric.value)
    try:
        plot = compare.write_boxplot(comparison, out / f"compare_{metric.value}.png", metric.value)
        state.info(f"box plot: {plot}")
    except report.PlotsUnavailable as exc:
        warn_line(str(exc))
    state.info(f"{len(comparison.names)} runs on {len(comparison.tracks)} track(s): "
               f"{paths['table']}, {paths['csv']}, {paths['json']}")
