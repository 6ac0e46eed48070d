"""Aggregate per-track scores the way the paper (and museval) reports them, and write reports.

Aggregation follows museval's ``EvalStore``: per track, source and metric the median over frames
(NaN frames skipped), then the median over tracks; the average is the mean over sources of those
medians (the paper's "avg" column). BSSEval v4 is the headline, as in the paper.

Beside it, the **global SDR** (one number per track and source, ``museval_format.global_sdr``:
the MDX 2021 challenge's SDR, demucs's ``nsdr``) is aggregated both ways its users report it:
the **mean** over tracks (the MDX challenges rank by the mean over songs; demucs's ``nsdr``) and
the **median** over tracks (demucs's ``nsdr_med``, and the aggregation of the BSSEval table);
each ``avg`` is the mean over sources. A track whose score file predates the global SDR has none
("n/a") and is left out of those two aggregates only.

A registered model's published scores are shown beside cumx's only when they were measured on
the set scored here (:class:`Published`, the set from ``weights.registry``): the same 50 tracks
of MUSDB18 (AAC, band-limited) and MUSDB18-HQ do not give the same scores, so across sets one
line says what differs instead.

Reports: a text table, ``summary.json``, ``scores.csv`` (one row per track and source) and one
box plot PNG per source (needs matplotlib, an optional dependency: ``pip install 'cumx[eval]'``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from cumx_cli.engine.data.musdb import TrackFolder
from cumx_cli.engine.errors import EvaluationError
from cumx_cli.engine.evaluation.museval_format import GLOBAL_SDR_EPS, METRICS, write_atomic
from cumx_cli.engine.evaluation.runner import TrackResult
from cumx_cli.engine.files import replacing
from cumx_cli.engine.weights.registry import CATALOGUE, ScoreSet

AVERAGE = "avg"

#: Published BSSEval v4 scores (MUSDB18 test, median over frames, median over tracks) of the
#: registered models, keyed by the names of the weights registry (``engine/weights/registry.py``,
#: whose ``sdr_set`` says which set each was measured on: MUSDB18 for all of these). Sources:
#: asteroid's ``egs/musdb18/X-UMX/README.md`` for ``xumx`` (equal to the X-UMX paper's Table 1
#: to two decimals: vocals 6.61, drums 6.47, bass 5.43, other 4.64, avg 5.79) and ``xumxl``
#: (SDR only); the paper's two-decimal figures for ``xumx-nnabla`` (Sony's x-umx.md: these
#: weights give them); the open-unmix-pytorch README (commit cf0e6e19, "Scores (Median of frames,
#: Median of tracks)", columns SDR SIR SAR ISR) for ``umx`` and ``umxhq``, and its later README
#: for ``umxl`` (SDR only); see spec §5. Averages are the published ones where given. Models
#: without a trustworthy published table are left out on purpose.
PUBLISHED_SCORES: dict[str, dict[str, dict[str, float]]] = {
    "xumx": {
        "vocals": {"SDR": 6.612, "SIR": 14.167, "ISR": 11.774, "SAR": 6.750},
        "drums": {"SDR": 6.471, "SIR": 12.677, "ISR": 11.276, "SAR": 5.968},
        "bass": {"SDR": 5.426, "SIR": 11.555, "ISR": 9.989, "SAR": 6.350},
        "other": {"SDR": 4.639, "SIR": 7.055, "ISR": 9.651, "SAR": 4.833},
        AVERAGE: {"SDR": 5.79},
    },
    "xumx-nnabla": {
        "vocals": {"SDR": 6.61}, "drums": {"SDR": 6.47}, "bass": {"SDR": 5.43},
        "other": {"SDR": 4.64}, AVERAGE: {"SDR": 5.79},
    },
    "xumxl": {
        "vocals": {"SDR": 7.565},
        "drums": {"SDR": 7.394},
        "bass": {"SDR": 6.283},
        "other": {"SDR": 4.833},
    },
    "umx": {
        "vocals": {"SDR": 6.32, "SIR": 13.33, "ISR": 11.93, "SAR": 6.52},
        "drums": {"SDR": 5.73, "SIR": 11.12, "ISR": 10.51, "SAR": 6.02},
        "bass": {"SDR": 5.23, "SIR": 10.93, "ISR": 9.23, "SAR": 6.34},
        "other": {"SDR": 4.02, "SIR": 6.59, "ISR": 9.31, "SAR": 4.74},
        AVERAGE: {"SDR": 5.33},
    },
    "umxhq": {
        "vocals": {"SDR": 6.25, "SIR": 12.95, "ISR": 12.70, "SAR": 6.50},
        "drums": {"SDR": 6.04, "SIR": 11.65, "ISR": 11.17, "SAR": 5.93},
        "bass": {"SDR": 5.07, "SIR": 10.35, "ISR": 9.71, "SAR": 6.02},
        "other": {"SDR": 4.28, "SIR": 7.10, "ISR": 8.78, "SAR": 4.62},
        AVERAGE: {"SDR": 5.41},
    },
    "umxl": {
        "vocals": {"SDR": 7.21}, "drums": {"SDR": 7.15}, "bass": {"SDR": 6.02},
        "other": {"SDR": 4.89}, AVERAGE: {"SDR": 6.32},
    },
}

#: A data set as scored (the layout its tracks came in) or as a published score was measured.
DataSet = ScoreSet
#: The layout of a MUSDB root: ``stem`` (``<track>.stem.mp4`` files) or ``wav`` (track folders).
Layout = Literal["stem", "wav"]
#: How each set is named to the user.
DATASET_NAMES: dict[str, str] = {"MUSDB18": "MUSDB18 (compressed)", "MUSDB18-HQ": "MUSDB18-HQ"}
#: How the global SDR is named and defined, in the reports.
GLOBAL_SDR_TITLE = "global SDR (MDX 2021 / demucs nSDR: whole track, no distortion filter)"

#: source -> metric -> value
Table = dict[str, dict[str, float]]


def dataset_of_layout(layout: Layout) -> DataSet:
    """The set a layout holds: MUSDB18's ``.stem.mp4`` files are MUSDB18 (AAC); track folders of
    wav files are taken for MUSDB18-HQ (a MUSDB18 decoded with ``musdbconvert`` looks the same:
    the layout cannot tell them apart)."""
    return "MUSDB18" if layout == "stem" else "MUSDB18-HQ"


def layout_of(tracks: Sequence[TrackFolder]) -> Layout:
    """``stem`` when the tracks are ``.stem.mp4`` files, else ``wav``."""
    return "stem" if any(t.stem_file is not None for t in tracks) else "wav"


@dataclass(frozen=True)
class Summary:
    """Scores aggregated over frames (``per_track``) and then over tracks (``overall``).

    ``overall`` has one row per source plus ``avg`` (mean over sources). ``global_sdr`` holds
    the global SDR of the tracks that have one (track -> source -> dB), ``global_mean`` and
    ``global_median`` its mean and median over those tracks per source, plus ``avg``.
    """

    sources: tuple[str, ...]
    per_track: dict[str, Table]
    overall: Table
    global_sdr: dict[str, dict[str, float]] = field(default_factory=dict)
    global_mean: dict[str, float] = field(default_factory=dict)
    global_median: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"aggregation": "median over frames, median over tracks",
                "num_tracks": len(self.per_track), "overall": self.overall,
                "per_track": self.per_track,
                "global_sdr": {
                    "definition": "10 log10((sum ref^2 + eps) / (sum (ref - est)^2 + eps)) over "
                                  "the whole track and every channel (MDX 2021; demucs new_sdr)",
                    "eps": GLOBAL_SDR_EPS, "num_tracks": len(self.global_sdr),
                    "mean_over_tracks": self.global_mean,
                    "median_over_tracks": self.global_median, "per_track": self.global_sdr}}


def _nanmedian(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).all():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmedian(arr))


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def summarize(results: Sequence[TrackResult], sources: Sequence[str]) -> Summary:
    """Median over frames per track, then median over the tracks that have scores; the global
    SDR's mean and median over the tracks that have one."""
    per_track = {r.track: {s: {m: _nanmedian(r.frames[s][m]) for m in METRICS}
                           for s in sources if s in r.frames}
                 for r in results if r.frames}
    overall: Table = {}
    for source in sources:
        overall[source] = {m: _nanmedian([t[source][m] for t in per_track.values() if source in t])
                           for m in METRICS}
    overall[AVERAGE] = {m: float(np.mean([overall[s][m] for s in sources])) for m in METRICS}
    global_sdr = {r.track: {s: r.global_sdr[s] for s in sources if s in r.global_sdr}
                  for r in results if r.frames and r.global_sdr}
    mean: dict[str, float] = {}
    median: dict[str, float] = {}
    if global_sdr:
        for source in sources:
            values = [t[source] for t in global_sdr.values() if source in t]
            mean[source], median[source] = _nanmean(values), _nanmedian(values)
        mean[AVERAGE] = float(np.mean([mean[s] for s in sources]))
        median[AVERAGE] = float(np.mean([median[s] for s in sources]))
    return Summary(tuple(sources), per_track, overall, global_sdr, mean, median)


@dataclass(frozen=True)
class Published:
    """A registered model's published scores (``scores``: source -> metric -> dB, ``avg`` filled
    in where missing) and the test set they were measured on (``dataset``)."""

    model: str
    dataset: DataSet
    scores: Table

    def comparable(self, scored: DataSet | None) -> bool:
        """Whether these scores go beside scores of ``scored`` (None: not known, so they do)."""
        return scored is None or scored == self.dataset

    def context(self, scored: DataSet | None) -> str | None:
        """The line shown instead of the scores when ``scored`` is another set; else None."""
        if self.comparable(scored):
            return None
        return (f"published ({self.model}) not shown: published on "
                f"{DATASET_NAMES[self.dataset]}; this is {DATASET_NAMES[str(scored)]}")


def published_scores(model: str | None) -> Published | None:
    """The published scores of a registered model name, or None (a checkpoint path, a model
    without a published table or without the set it was measured on)."""
    if model is None or model not in PUBLISHED_SCORES or model not in CATALOGUE:
        return None
    dataset = CATALOGUE[model].sdr_set
    if dataset is None:
        return None
    table = {s: dict(v) for s, v in PUBLISHED_SCORES[model].items()}
    sources = [s for s in table if s != AVERAGE]
    avg = table.setdefault(AVERAGE, {})
    for m in METRICS:
        if m not in avg and all(m in table[s] for s in sources):
            avg[m] = round(float(np.mean([table[s][m] for s in sources])), 3)
    return Published(model, dataset, table)


def _cell(value: float | None) -> str:
    return f"{value:7.2f}" if value is not None and not math.isnan(value) else "      -"


def format_table(summary: Summary, published: Published | None = None,
                 dataset: DataSet | None = None) -> str:
    """The summary as fixed-width text: the BSSEval v4 table (with the published scores beside
    it when they were measured on ``dataset``, the set scored; else one line saying what
    differs), then the global SDR per source, mean and median over tracks."""
    shown = published if published is not None and published.comparable(dataset) else None
    head = "source " + "".join(f"{m:>8}" for m in METRICS)
    if shown is not None:
        head += f"   | published ({shown.model}) " + "".join(f"{m:>8}" for m in METRICS)
    lines = [f"BSSEval v4: median over frames, then median over {len(summary.per_track)} "
             "track(s), dB", head]
    for source in (*summary.sources, AVERAGE):
        row = f"{source:7s}" + "".join(f" {_cell(summary.overall[source][m])}" for m in METRICS)
        if shown is not None:
            pub = shown.scores.get(source, {})
            row += "   | " + " " * (len(shown.model) + 13) + "".join(
                f" {_cell(pub.get(m))}" for m in METRICS)
        lines.append(row)
    if published is not None and shown is None:
        lines.append(published.context(dataset) or "")
    elif shown is not None and dataset is None:
        lines.append(f"published ({shown.model}): measured on {DATASET_NAMES[shown.dataset]}")
    lines.extend(_global_lines(summary))
    return "\n".join(lines) + "\n"


def _global_lines(summary: Summary) -> list[str]:
    count, total = len(summary.global_sdr), len(summary.per_track)
    if not count:
        return [f"{GLOBAL_SDR_TITLE}: n/a (the score files predate it; --force scores them "
                "again)"] if total else []
    over = f"{count} track(s)" if count == total else \
        f"{count} of {total} track(s) (the others' score files predate it)"
    lines = [f"{GLOBAL_SDR_TITLE}, over {over}, dB", "source " + f"{'mean':>8}{'median':>8}"]
    for source in (*summary.sources, AVERAGE):
        lines.append(f"{source:7s} {_cell(summary.global_mean.get(source))} "
                     f"{_cell(summary.global_median.get(source))}")
    return lines


def _csv_value(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"


def scores_csv(summary: Summary) -> str:
    """One row per track and source: the medians over frames and the global SDR (empty where
    not known); then the aggregates: median over tracks (and their ``avg``), and the global
    SDR's mean over tracks."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["track", "source", *METRICS, "global_SDR"])
    for track, table in summary.per_track.items():
        known = summary.global_sdr.get(track, {})
        for source, row in table.items():
            writer.writerow([track, source, *(f"{row[m]:.5f}" for m in METRICS),
                             _csv_value(known.get(source))])
    for source, row in summary.overall.items():
        writer.writerow([f"({AVERAGE if source == AVERAGE else 'median over tracks'})", source,
                         *(f"{row[m]:.5f}" for m in METRICS),
                         _csv_value(summary.global_median.get(source))])
    for source, value in summary.global_mean.items():
        writer.writerow(["(mean over tracks)", source, *([""] * len(METRICS)), _csv_value(value)])
    return buf.getvalue()


def write_reports(summary: Summary, out_dir: Path, published: Published | None = None,
                  dataset: DataSet | None = None) -> dict[str, Path]:
    """Write ``summary.txt``, ``summary.json`` and ``scores.csv`` (atomically); ``dataset`` is
    the set scored (:func:`dataset_of_layout`), None when not known."""
    paths = {"summary": out_dir / "summary.txt", "json": out_dir / "summary.json",
             "csv": out_dir / "scores.csv"}
    write_atomic(paths["summary"], format_table(summary, published, dataset))
    data = summary.to_dict()
    data["dataset"] = dataset
    if published is not None:
        data["published"] = {"model": published.model, "dataset": published.dataset,
                             "comparable": published.comparable(dataset),
                             "note": published.context(dataset), "scores": published.scores}
    write_atomic(paths["json"], json.dumps(data, indent=2, allow_nan=True) + "\n")
    write_atomic(paths["csv"], scores_csv(summary))
    return paths


def preload_plotting() -> threading.Thread:
    """Import what :func:`write_boxplots` draws with (matplotlib, about 1 s of imports) on a
    background thread, while the tracks are scored: BSSEval spends its time in torch and numpy
    calls that release the GIL, so the import costs the run almost nothing. Reading audio holds
    the GIL more (a Python loop over blocks): started while the first track was read, the
    import made that reading 0.4 s slower, so ``eval`` starts it when the first track's scoring
    does (``EvalEvents.track_scoring``). An import error is left for :func:`write_boxplots`
    to report."""

    def load() -> None:
        with contextlib.suppress(Exception):
            import matplotlib.backends.backend_agg  # noqa: F401 - what savefig draws PNGs with
            import matplotlib.figure  # noqa: F401

    thread = threading.Thread(target=load, name="cumx-preload-matplotlib", daemon=True)
    thread.start()
    return thread


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
