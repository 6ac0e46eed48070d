"""Aggregate per-track scores the way the paper (and museval) reports them, and write reports.

Aggregation follows museval's ``EvalStore``: per track, source and metric the median over frames
(NaN frames skipped), then the median over tracks; the average is the mean over sources of those
medians (the paper's "avg" column). Reports: a text table, ``summary.json``, ``scores.csv`` (one
row per track and source) and one box plot PNG per source (needs matplotlib, an optional
dependency: ``pip install 'cumx[eval]'``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation.museval_format import METRICS, write_atomic
from cumx_cli.engine.evaluation.runner import TrackResult
from cumx_cli.engine.files import replacing

AVERAGE = "avg"

#: Published BSSEval v4 scores (MUSDB18 test, median over frames, median over tracks) of the
#: registered models, keyed by the names of the weights registry (``engine/weights/registry.py``).
#: Sources: asteroid's
#: ``egs/musdb18/X-UMX/README.md`` for ``xumx`` (equal to the X-UMX paper's Table 1 to two
#: decimals: vocals 6.61, drums 6.47, bass 5.43, other 4.64, avg 5.79) and ``xumxl`` (SDR only);
#: see spec §5. Models without a trustworthy published table are left out on purpose.
PUBLISHED_SCORES: dict[str, dict[str, dict[str, float]]] = {
    "xumx": {
        "vocals": {"SDR": 6.612, "SIR": 14.167, "ISR": 11.774, "SAR": 6.750},
        "drums": {"SDR": 6.471, "SIR": 12.677, "ISR": 11.276, "SAR": 5.968},
        "bass": {"SDR": 5.426, "SIR": 11.555, "ISR": 9.989, "SAR": 6.350},
        "other": {"SDR": 4.639, "SIR": 7.055, "ISR": 9.651, "SAR": 4.833},
        AVERAGE: {"SDR": 5.79},
    },
    "xumxl": {
        "vocals": {"SDR": 7.565},
        "drums": {"SDR": 7.394},
        "bass": {"SDR": 6.283},
        "other": {"SDR": 4.833},
    },
}

#: source -> metric -> value
Table = dict[str, dict[str, float]]


@dataclass(frozen=True)
class Summary:
    """Scores aggregated over frames (``per_track``) and then over tracks (``overall``).

    ``overall`` has one row per source plus ``avg`` (mean over sources).
    """

    sources: tuple[str, ...]
    per_track: dict[str, Table]
    overall: Table

    def to_dict(self) -> dict[str, object]:
        return {"aggregation": "median over frames, median over tracks",
                "num_tracks": len(self.per_track), "overall": self.overall,
                "per_track": self.per_track}


def _nanmedian(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).all():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmedian(arr))


def summarize(results: Sequence[TrackResult], sources: Sequence[str]) -> Summary:
    """Median over frames per track, then median over the tracks that have scores."""
    per_track = {r.track: {s: {m: _nanmedian(r.frames[s][m]) for m in METRICS}
                           for s in sources if s in r.frames}
                 for r in results if r.frames}
    overall: Table = {}
    for source in sources:
        overall[source] = {m: _nanmedian([t[source][m] for t in per_track.values() if source in t])
                           for m in METRICS}
    overall[AVERAGE] = {m: float(np.mean([overall[s][m] for s in sources])) for m in METRICS}
    return Summary(tuple(sources), per_track, overall)


def published_scores(model: str | None) -> Table | None:
    """The published table of a registered model name, with ``avg`` filled in where missing."""
    if model is None or model not in PUBLISHED_SCORES:
        return None
    table = {s: dict(v) for s, v in PUBLISHED_SCORES[model].items()}
    sources = [s for s in table if s != AVERAGE]
    avg = table.setdefault(AVERAGE, {})
    for m in METRICS:
        if m not in avg and all(m in table[s] for s in sources):
            avg[m] = round(float(np.mean([table[s][m] for s in sources])), 3)
    return table


def _cell(value: float | None) -> str:
    return f"{value:7.2f}" if value is not None and not math.isnan(value) else "      -"


def format_table(summary: Summary, published: Table | None = None,
                 model: str | None = None) -> str:
    """The summary as a fixed-width text table, with the published scores beside it."""
    head = "source " + "".join(f"{m:>8}" for m in METRICS)
    if published is not None:
        head += "   | published (" + (model or "?") + ") " + "".join(f"{m:>8}" for m in METRICS)
    lines = [f"BSSEval v4: median over frames, then median over {len(summary.per_track)} "
             "track(s), dB", head]
    for source in (*summary.sources, AVERAGE):
        row = f"{source:7s}" + "".join(f" {_cell(summary.overall[source][m])}" for m in METRICS)
        if published is not None:
            pub = published.get(source, {})
            row += "   | " + " " * (len(model or "?") + 13) + "".join(
                f" {_cell(pub.get(m))}" for m in METRICS)
        lines.append(row)
    return "\n".join(lines) + "\n"


def scores_csv(summary: Summary) -> str:
    """One row per track and source: the medians over frames."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["track", "source", *METRICS])
    for track, table in summary.per_track.items():
        for source, row in table.items():
            writer.writerow([track, source, *(f"{row[m]:.5f}" for m in METRICS)])
    for source, row in summary.overall.items():
        writer.writerow([f"({AVERAGE if source == AVERAGE else 'median over tracks'})", source,
                         *(f"{row[m]:.5f}" for m in METRICS)])
    return buf.getvalue()


def write_reports(summary: Summary, out_dir: Path, published: Table | None = None,
                  model: str | None = None) -> dict[str, Path]:
    """Write ``summary.txt``, ``summary.json`` and ``scores.csv`` (atomically)."""
    paths = {"summary": out_dir / "summary.txt", "json": out_dir / "summary.json",
             "csv": out_dir / "scores.csv"}
    write_atomic(paths["summary"], format_table(summary, published, model))
    data = summary.to_dict()
    if published is not None:
        data["published"] = {"model": model, "scores": published}
    write_atomic(paths["json"], json.dumps(data, indent=2, allow_nan=True) + "\n")
    write_atomic(paths["csv"], scores_csv(summary))
    return paths


class PlotsUnavailable(EvaluationError):
    """matplotlib cannot be imported: the box plots are skipped (the scores are complete)."""


def write_boxplots(summary: Summary, out_dir: Path) -> list[Path]:
    """One PNG per source: the distribution over tracks of each metric's frame median.

    Raises:
        PlotsUnavailable: matplotlib cannot be imported (the plots are optional).
        EvaluationError: a plot cannot be written (a full disk, a read-only folder).
    """
    try:
        from matplotlib.figure import Figure  # the object API: no pyplot, no global backend
    except ImportError as exc:
        raise PlotsUnavailable(f"box plots skipped: matplotlib cannot be imported ({exc})") from exc
    paths = []
    for source in summary.sources:
        data = [[t[source][m] for t in summary.per_track.values()
                 if source in t and not math.isnan(t[source][m])] for m in METRICS]
        fig = Figure(figsize=(5, 3.5), dpi=100)
        ax = fig.add_subplot()
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(METRICS) + 1), list(METRICS))
        ax.set_ylabel("dB (median over frames)")
        ax.set_title(f"{source}: {len(summary.per_track)} track(s)")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"boxplot_{source}.png"
        try:
            with replacing(path) as tmp:
                fig.savefig(tmp, format="png")
        except OSError as exc:
            raise EvaluationError(f"{path}: cannot write the box plot ({exc.strerror or exc})"
                                  ) from exc
        paths.append(path)
    return paths
