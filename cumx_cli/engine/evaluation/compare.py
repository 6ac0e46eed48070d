"""Several runs' scores side by side: the table of the paper's Table 1, paired per-track
differences against a reference run, and one box plot.

A run is a folder of museval per-track score files (``<track>.json``, museval's ``TrackStore``
format), as ``cumx eval --out`` writes them under ``<subset>/`` and as museval itself (or any tool
writing its format) does; cumx's ``cumx_record`` key is not needed. Runs are compared on the
tracks every run scored and the sources every one of those files holds. Aggregation is that of
``cumx eval`` (:func:`cumx_cli.engine.evaluation.report.summarize`, itself museval's
``EvalStore``): per track the median over frames (NaN frames left out), then the median over
tracks; ``avg`` is the mean over sources of those medians. The paired difference of a run is, per
track, its median over frames minus the reference run's, and then the median over tracks of those
differences, with the number of tracks on which the run scores higher.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cumx_cli.engine.errors import ConfigError, EvaluationError
from cumx_cli.engine.evaluation.museval_format import METRICS, FrameTable, read_json, write_atomic
from cumx_cli.engine.evaluation.report import (
    AVERAGE,
    PlotsUnavailable,
    Summary,
    _nanmedian,  # the median over tracks of `cumx eval`, reused, not redefined
    summarize,
)
from cumx_cli.engine.evaluation.runner import TrackResult
from cumx_cli.engine.files import replacing

#: The subset folder looked for first when none is given (the paper's numbers are on it).
DEFAULT_SUBSET = "test"
#: Names of subset folders: a run given as one is named after the folder above it.
SUBSETS = ("test", "train")
#: How many left-out tracks the one-line notice names before "and N more".
NAMED_LEFT_OUT = 5


@dataclass(frozen=True)
class RunScores:
    """One run as read: the frame scores of every ``<track>.json`` of its score folder."""

    name: str
    folder: Path
    frames: dict[str, FrameTable]


@dataclass(frozen=True)
class Difference:
    """A run against the reference run on one source (or ``avg``) and metric: the median over
    tracks of the per-track differences, and on how many of the ``paired`` tracks (those where
    both scores are defined) the run scores strictly higher."""

    median: float
    improved: int
    paired: int

    def to_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "improved": self.improved, "paired": self.paired}


#: source (or ``avg``) -> metric -> difference to the reference run
Differences = dict[str, dict[str, Difference]]


@dataclass(frozen=True)
class Comparison:
    """Runs aggregated on their common tracks and sources; the first run is the reference.

    ``summaries[i]`` is run ``i``'s :class:`~cumx_cli.engine.evaluation.report.Summary` on
    exactly ``tracks`` and ``sources``; ``differences[i]`` compares run ``i`` with run 0 (empty
    for run 0). ``left_out_tracks`` / ``left_out_sources`` name, for each track or source some
    runs have and others lack, the runs that lack it.
    """

    names: tuple[str, ...]
    folders: tuple[Path, ...]
    tracks: tuple[str, ...]
    sources: tuple[str, ...]
    summaries: tuple[Summary, ...]
    differences: tuple[Differences, ...]
    left_out_tracks: dict[str, tuple[str, ...]]
    left_out_sources: dict[str, tuple[str, ...]]

    def to_dict(self) -> dict[str, object]:
        return {
            "aggregation": "median over frames, median over tracks; avg: mean over sources",
            "differences": "per track (run - reference), median over tracks; avg: per-track mean "
                           "over sources",
            "reference": self.names[0], "tracks": list(self.tracks), "sources": list(self.sources),
            "left_out_tracks": {t: list(r) for t, r in self.left_out_tracks.items()},
            "left_out_sources": {s: list(r) for s, r in self.left_out_sources.items()},
            "runs": [{"name": name, "folder": str(folder), "overall": summary.overall,
                      "differences": {s: {m: d.to_dict() for m, d in row.items()}
                                      for s, row in diff.items()},
                      "per_track": summary.per_track}
                     for name, folder, summary, diff in zip(
                         self.names, self.folders, self.summaries, self.differences, strict=True)],
        }


def _score_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith("."))


def score_folder(folder: Path, subset: str | None = None) -> Path:
    """The folder of ``<track>.json`` files of a run given as ``folder``.

    With ``subset``: ``folder/subset``, or ``folder`` itself when it is named so. Without: the
    ``test`` subfolder when it holds score files, else the one subfolder that does, else
    ``folder`` itself (a subset folder given directly). ``cumx eval``'s own ``summary.json``
    beside the subset folders is thereby never taken for a track.

    Raises:
        EvaluationError: no score files where they are looked for, or several subset folders
            to choose from.
    """
    if subset is not None:
        candidates = [folder / subset, *([folder] if folder.name == subset else [])]
        found = next((c for c in candidates if c.is_dir() and _score_files(c)), None)
        if found is None:
            raise EvaluationError(f"{folder}: no score files (<track>.json) in {folder / subset}")
        return found
    subsets = sorted(d for d in folder.iterdir() if d.is_dir() and _score_files(d))
    if folder / DEFAULT_SUBSET in subsets:
        return folder / DEFAULT_SUBSET
    if len(subsets) == 1:
        return subsets[0]
    if len(subsets) > 1:
        raise EvaluationError(f"{folder}: score files in {', '.join(d.name for d in subsets)}; "
                              "choose one with --subset")
    if not _score_files(folder):
        raise EvaluationError(f"{folder}: no score files (<track>.json) in it or in a subset "
                              "folder; give a `cumx eval --out` folder or one of its subset "
                              "folders")
    return folder


def read_run(where: Path, name: str) -> RunScores:
    """Every track's frame scores in a score folder (found by :func:`score_folder`).

    Raises:
        EvaluationError: a score file that is not in museval's format (named).
    """
    frames = {}
    for path in _score_files(where):
        try:
            frames[path.stem] = read_json(path)
        except EvaluationError as exc:
            reason = exc.__cause__ or exc
            raise EvaluationError(f"{path}: not a readable museval score file ({reason})"
                                  ) from exc
    return RunScores(name, where, frames)


def default_names(folders: Sequence[Path], score_folders: Sequence[Path]) -> list[str]:
    """Run names: each folder's name as given, or, for a subset folder given directly
    (``eval/test``), the name of the folder above it; the folders as given when names collide."""
    names = []
    for given, found in zip(folders, score_folders, strict=True):
        folder = given.resolve()
        if found == given and folder.name in SUBSETS:
            folder = folder.parent
        names.append(folder.name or str(folder))
    if len(set(names)) < len(names):
        names = [str(f) for f in folders]
    return names


def check_names(names: Sequence[str] | None, num_runs: int) -> None:
    """Raises ConfigError: fewer than two runs, or names (when given) not one per run, empty or
    repeated."""
    if num_runs < 2:
        raise ConfigError(f"comparing needs two or more score folders, got {num_runs}")
    if names is None:
        return
    if len(names) != num_runs:
        raise ConfigError(f"names: {len(names)} name(s) for {num_runs} score folder(s)",
                          field="names")
    if any(not n for n in names):
        raise ConfigError("names: a name is empty", field="names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"names: {', '.join(repeated)} given twice (the same folder twice?)",
                          field="names")


def _missing(keys: Sequence[set[str]], names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each key some sets hold and others not -> the names of the sets without it."""
    union = dict.fromkeys(k for key_set in keys for k in sorted(key_set))  # ordered, unique
    return {k: tuple(n for n, s in zip(names, keys, strict=True) if k not in s) for k in union
            if not all(k in s for s in keys)}


def paired_differences(reference: Summary, run: Summary) -> Differences:
    """Per source and metric, :class:`Difference` of ``run`` against ``reference`` over their
    tracks; ``avg`` pairs each track's mean over sources."""
    def per_track(summary: Summary, track: str, source: str, metric: str) -> float:
        row = summary.per_track[track]
        if source == AVERAGE:
            return float(np.mean([row[s][metric] for s in summary.sources]))
        return row[source][metric]

    out: Differences = {}
    for source in (*reference.sources, AVERAGE):
        out[source] = {}
        for metric in METRICS:
            diffs = np.array([per_track(run, t, source, metric)
                              - per_track(reference, t, source, metric)
                              for t in reference.per_track])
            defined = diffs[~np.isnan(diffs)]
            out[source][metric] = Difference(_nanmedian(list(diffs)), int((defined > 0).sum()),
                                             int(defined.size))
    return out


def compare_runs(runs: Sequence[RunScores]) -> Comparison:
    """Aggregate the runs on the tracks and sources they share; the first is the reference.

    Raises:
        ConfigError: fewer than two runs, or two with one name.
        EvaluationError: no track, or no source, in every run.
    """
    names = [r.name for r in runs]
    check_names(names, len(runs))
    track_sets = [set(r.frames) for r in runs]
    tracks = sorted(set.intersection(*track_sets))
    if not tracks:
        raise EvaluationError("no track is scored in every run: " + "; ".join(
            f"{r.name}: {len(r.frames)} track(s) in {r.folder}" for r in runs))
    source_sets = [set.intersection(*(set(r.frames[t]) for t in tracks)) for r in runs]
    first = runs[0].frames[tracks[0]]
    sources = tuple(s for s in first if all(s in ss for ss in source_sets))
    if not sources:
        raise EvaluationError("no source is scored in every run: " + "; ".join(
            f"{r.name}: {', '.join(sorted(s))}" for r, s in zip(runs, source_sets, strict=True)))
    summaries = tuple(summarize([TrackResult(t, "scored", r.frames[t]) for t in tracks], sources)
                      for r in runs)
    differences = tuple({} if i == 0 else paired_differences(summaries[0], s)
                        for i, s in enumerate(summaries))
    return Comparison(tuple(names), tuple(r.folder for r in runs), tuple(tracks), sources,
                      summaries, differences, _missing(track_sets, names),
                      _missing(source_sets, names))


def compare_folders(folders: Sequence[Path], names: Sequence[str] | None = None,
                    subset: str | None = None) -> Comparison:
    """Read each run's score folder (:func:`score_folder`) and compare them
    (:func:`compare_runs`); ``names`` default to :func:`default_names`.

    Raises:
        ConfigError: fewer than two folders, or names that do not fit them.
        EvaluationError: a folder without score files, an unreadable score file, or no track
            or source in every run.
    """
    check_names(names, len(folders))
    found = [score_folder(f, subset) for f in folders]
    run_names = list(names) if names is not None else default_names(folders, found)
    return compare_runs([read_run(where, name) for where, name in zip(found, run_names, strict=True)])


def _list_missing(missing: dict[str, tuple[str, ...]]) -> str:
    named = [f"{k} (not in {', '.join(runs)})" for k, runs in list(missing.items())[:NAMED_LEFT_OUT]]
    more = len(missing) - len(named)
    return ", ".join(named) + (f" and {more} more" if more else "")


def left_out_notes(comparison: Comparison) -> list[str]:
    """One line each for the tracks and the sources left out because some run lacks them."""
    notes = []
    if comparison.left_out_tracks:
        notes.append(f"{len(comparison.left_out_tracks)} track(s) left out, not scored in every "
                     f"run: {_list_missing(comparison.left_out_tracks)}")
    if comparison.left_out_sources:
        notes.append(f"{len(comparison.left_out_sources)} source(s) left out, not scored in every "
                     f"run: {_list_missing(comparison.left_out_sources)}")
    return notes


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]


def _number(value: float, sign: str = "") -> str:
    return "-" if math.isnan(value) else f"{value:{sign}.2f}"


def format_table(comparison: Comparison, metric: str = "SDR") -> str:
    """The runs' ``metric`` per source and ``avg``, then each run's paired differences against
    the first run with "improved/paired" track counts, as fixed-width text."""
    columns = (*comparison.sources, AVERAGE)
    reference = comparison.names[0]
    rows = [["run", *columns]]
    rows += [[name, *(_number(summary.overall[c][metric]) for c in columns)]
             for name, summary in zip(comparison.names, comparison.summaries, strict=True)]
    lines = [f"{metric} (dB): median over frames, then median over {len(comparison.tracks)} "
             "track(s); avg: mean over sources", *_aligned(rows), "",
             f"{metric} paired with {reference}: median over tracks of (run - {reference}), and "
             f"tracks where run > {reference} (avg: per-track mean over sources)"]
    diff_rows = [[name, *(_difference(diff[c][metric]) for c in columns)]
                 for name, diff in zip(comparison.names[1:], comparison.differences[1:], strict=True)]
    lines += _aligned([["run", *columns], *diff_rows])
    return "\n".join(lines) + "\n"


def _difference(diff: Difference) -> str:
    return f"{_number(diff.median, '+')} {diff.improved}/{diff.paired}"


def comparison_csv(comparison: Comparison) -> str:
    """One row per run, source (and ``avg``) and metric: the median over tracks, and the paired
    difference to the first run (empty for the first run)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "source", "metric", "median", "difference", "improved", "paired"])
    for name, summary, diff in zip(comparison.names, comparison.summaries, comparison.differences,
                                   strict=True):
        for source in (*comparison.sources, AVERAGE):
            for metric in METRICS:
                d = diff.get(source, {}).get(metric)
                extra = ["", "", ""] if d is None else [f"{d.median:.5f}", d.improved, d.paired]
                writer.writerow([name, source, metric, f"{summary.overall[source][metric]:.5f}",
                                 *extra])
    return buf.getvalue()


def write_reports(comparison: Comparison, out_dir: Path, metric: str = "SDR") -> dict[str, Path]:
    """Write ``compare_<metric>.txt`` (the table), ``compare.csv`` and ``compare.json`` (every
    metric, and per track) under ``out_dir``, each atomically.

    Raises:
        EvaluationError: a file cannot be written.
    """
    paths = {"table": out_dir / f"compare_{metric}.txt", "csv": out_dir / "compare.csv",
             "json": out_dir / "compare.json"}
    write_atomic(paths["table"], format_table(comparison, metric))
    write_atomic(paths["csv"], comparison_csv(comparison))
    write_atomic(paths["json"], json.dumps(comparison.to_dict(), indent=2, allow_nan=True) + "\n")
    return paths


def _box_data(comparison: Comparison, metric: str) -> list[list[list[float]]]:
    """Per source, per run: the defined per-track medians."""
    return [[[row[source][metric] for row in summary.per_track.values()
              if not math.isnan(row[source][metric])] for summary in comparison.summaries]
            for source in comparison.sources]


def write_boxplot(comparison: Comparison, path: Path, metric: str = "SDR") -> Path:
    """One PNG: per source, a box per run (in the runs' colours) of the per-track medians.

    Raises:
        PlotsUnavailable: matplotlib cannot be imported.
        EvaluationError: the file cannot be written.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure  # the object API: no pyplot, no global backend
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise PlotsUnavailable(f"box plot skipped: matplotlib cannot be imported ({exc})") from exc
    num_runs, num_sources = len(comparison.names), len(comparison.sources)
    colours = [colormaps["tab10"](i % 10) for i in range(num_runs)]
    fig = Figure(figsize=(max(5.0, 1.5 + 0.4 * num_runs * num_sources) + 1.5, 3.8), dpi=100,
                 layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / num_runs
    for s, per_run in enumerate(_box_data(comparison, metric)):
        positions = [s + (r - (num_runs - 1) / 2) * width for r in range(num_runs)]
        boxes = ax.boxplot(per_run, positions=positions, widths=width * 0.85, patch_artist=True,
                           manage_ticks=False, medianprops={"color": "black"})
        for box, colour in zip(boxes["boxes"], colours, strict=True):
            box.set_facecolor(colour)
    ax.set_xticks(range(num_sources), list(comparison.sources))
    ax.set_xlim(-0.6, num_sources - 0.4)
    ax.set_ylabel(f"{metric} (dB, median over frames)")
    ax.set_title(f"{metric} per track: {len(comparison.tracks)} track(s), {num_runs} runs")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=[Patch(facecolor=c, edgecolor="black", label=n)
                        for n, c in zip(comparison.names, colours, strict=True)],
               fontsize="small", loc="outside right upper")  # never over a box
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write the box plot ({exc.strerror or exc})"
                              ) from exc
    return path

