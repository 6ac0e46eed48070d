"""One prepared GPU check, in at most eight minutes on one GPU, printed as one table.

In order: the GPU-marked tests (``pytest -m gpu``); a training step of the full recipe (batch 16
x 6 s excerpts, MDL + CL, bridged X-UMX) in fp32 and with ``--amp bf16``, through the engine's
own ``train_one_epoch`` (samples per second, peak GPU memory); the fast BSSEval v4 of a 60 s
track on the device; then a 3-minute and a 20-minute file separated at several chunk lengths and
batch sizes (real-time factor of the whole file-to-stems call and of the in-memory separator,
peak GPU memory). Weights are random and full size (hidden 512, 3 BLSTM layers, four sources):
the speed of a model does not depend on its values.

    python benchmarks/gpu_check.py --out gpu_check.md --json gpu_check.json   # on a GPU
    python benchmarks/gpu_check.py --device cpu --quick                        # tiny, seconds

The clock starts with the script: before each row the time it will take is estimated from the
rows already measured, and a row that would end past ``--budget`` seconds is skipped with a note.
The real-time factor (RTF) is wall time over audio duration (0.01: a 3-minute file in 1.8 s).
The last note suggests a CUDA default chunk length and batch size by the rule of
:func:`suggest_default` (on CUDA only).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

import cumx_cli
from cumx_cli.api import separate_file
from cumx_cli.engine.config import EvalConfig, InferenceConfig, ModelConfig, TrainConfig
from cumx_cli.engine.device import resolve_device
from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.evaluation.runner import score
from cumx_cli.engine.events import NoTrainEvents
from cumx_cli.engine.files import replacing
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.losses import MultiDomainLoss
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.training.loop import train_one_epoch

RATE = 44100
#: The table's columns: (JSON key, markdown header).
COLUMNS = (("check", "check"), ("input", "input"), ("chunk_seconds", "chunk (s)"),
           ("batch", "batch"), ("rtf_file", "RTF file"), ("rtf_memory", "RTF in memory"),
           ("samples_per_second", "samples/s"), ("peak_gpu_mib", "peak GPU MiB"),
           ("seconds", "wall (s)"), ("status", "status"))
#: The most the GPU-marked tests may take (the rest of the budget is for the measurements).
TESTS_MAX_SECONDS = 150.0
#: A row's estimate is the slowest similar row measured so far times this.
MARGIN = 1.3
#: The suggested default must fit this much GPU memory (a 6-8 GB card beside a desktop).
DEFAULT_MEMORY_CAP_MIB = 4096.0
#: Settings whose whole-file RTF is within this fraction of the fastest count as equally fast.
EQUALLY_FAST = 0.05


@dataclass(frozen=True)
class Sizes:
    """What is measured: the full check, or tiny sizes that run in seconds on a CPU."""

    files: tuple[tuple[str, float], ...]
    chunks: tuple[float, ...]  # in order of priority: the first is the current default
    batches: tuple[int, ...]
    model: ModelConfig
    train_batch: int
    train_seconds: float
    train_steps: int
    score_seconds: float
    filters_len: int = EvalConfig().filters_len  # BSSEval's distortion filter taps (museval's)


FULL = Sizes(files=(("3 min", 180.0), ("20 min", 1200.0)), chunks=(30.0, 60.0, 120.0, 15.0),
             batches=(4, 1, 16), model=ModelConfig(), train_batch=16, train_seconds=6.0,
             train_steps=5, score_seconds=60.0)
QUICK = Sizes(files=(("3 s", 3.0), ("5 s", 5.0)), chunks=(2.0, 1.5), batches=(2, 1),
              model=ModelConfig(hidden_size=8, num_layers=1, n_fft=1024, hop_length=512,
                                max_bin=372),
              train_batch=2, train_seconds=1.0, train_steps=1, score_seconds=1.0, filters_len=32)


@dataclass
class Row:
    """One line of the table; ``None`` is an empty cell."""

    check: str
    input: str
    chunk_seconds: float | None = None
    batch: int | None = None
    rtf_file: float | None = None
    rtf_memory: float | None = None
    samples_per_second: float | None = None
    peak_gpu_mib: float | None = None
    seconds: float | None = None
    status: str = "ok"
    audio_seconds: float | None = None  # of the input (JSON only)


class Budget:
    """The wall-clock budget of the whole check, counted from the script's start."""

    def __init__(self, seconds: float, start: float) -> None:
        self.seconds, self.start = seconds, start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, estimate: float) -> bool:
        return self.elapsed() + estimate <= self.seconds

    def skip_note(self, estimate: float) -> str:
        return (f"skipped: about {estimate:.0f} s would pass the {self.seconds:.0f} s budget "
                f"({max(0.0, self.left()):.0f} s left)")


@dataclass
class Check:
    """What every part of the check shares."""

    device: torch.device
    sizes: Sizes
    budget: Budget
    work: Path
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def estimate(self, similar: Callable[[Row], bool]) -> float:
        """MARGIN x the slowest measured row that ``similar`` accepts; 0 when none is measured
        yet (the first row of a kind always runs if time is left)."""
        times = [r.seconds for r in self.rows if similar(r) and r.seconds is not None]
        return MARGIN * max(times) if times else 0.0


# ---------------------------------------------------------------------------------------------
# GPU memory and timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    """Peak memory torch allocated on the GPU since :func:`_reset_peak`; None off CUDA."""
    if device.type != "cuda":
        return None
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _failure(exc: BaseException, device: torch.device) -> str:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of GPU memory"
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"error: {type(exc).__name__}: {first}"


# ---------------------------------------------------------------------------------------------
# The GPU-marked tests


def tests_row(check: Check, target: str) -> Row:
    """``pytest -m gpu TARGET`` in one process; its summary as the status."""
    row = Row("gpu tests", f"pytest -m gpu {target}")
    timeout = min(TESTS_MAX_SECONDS, check.budget.left())
    if timeout <= 0:
        row.status = check.budget.skip_note(0.0)
        return row
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "gpu", "-p", "no:cacheprovider",
           target]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        row.seconds, row.status = time.perf_counter() - start, f"timed out after {timeout:.0f} s"
        return row
    row.seconds = time.perf_counter() - start
    row.status = _pytest_summary(proc.stdout, proc.returncode)
    if proc.returncode not in (0, 5):  # 5: nothing collected
        check.notes.append("gpu tests output (tail):\n" + proc.stdout[-2000:] + proc.stderr[-1000:])
    return row


def _pytest_summary(output: str, returncode: int) -> str:
    """``3 passed, 1 failed`` from pytest's last line (or its exit code)."""
    counts = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)",
                        output.strip().splitlines()[-1] if output.strip() else "")
    text = ", ".join(f"{n} {what}" for n, what in counts)
    return text or f"pytest exit code {returncode}"


# ---------------------------------------------------------------------------------------------
# A training step of the recipe


class _Examples(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``count`` training examples drawn from one batch of random stems held in memory:
    (mixture, stems), the mixture being the stems' sum, as the training sampler gives them."""

    def __init__(self, batch: int, sources: int, length: int, count: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.stems = 0.1 * torch.randn(batch, sources, 2, length, generator=gen)
        self.mixture = self.stems.sum(dim=1)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = index % self.stems.shape[0]
        return self.mixture[i], self.stems[i]


def train_rows(check: Check) -> None:
    """fp32 and bf16 autocast steps of the recipe (bf16 only on CUDA, as ``cumx train``)."""
    s = check.sizes
    config = TrainConfig(model=s.model, batch_size=s.train_batch, seq_seconds=s.train_seconds,
                         device=check.device.type)
    label = f"{s.train_batch} x {s.train_seconds:g} s"
    for amp in (None, "bf16"):
        row = Row(f"train {amp or 'fp32'}", label, batch=s.train_batch)
        estimate = check.estimate(lambda r: r.check.startswith("train"))
        if amp is not None and check.device.type != "cuda":
            row.status = "skipped: bf16 autocast needs CUDA (cumx train --amp bf16)"
        elif not check.budget.allows(estimate):
            row.status = check.budget.skip_note(estimate)
        else:
            start = time.perf_counter()
            try:
                _time_training(check.device, config, amp, s.train_steps, row)
            except Exception as exc:  # noqa: BLE001 - one failed row must not lose the table
                row.status = _failure(exc, check.device)
            row.seconds = time.perf_counter() - start
        check.rows.append(row)


def _time_training(device: torch.device, config: TrainConfig, amp: str | None, steps: int,
                   row: Row) -> None:
    """One warm-up step, then ``steps`` timed steps of ``train_one_epoch``."""
    torch.manual_seed(config.seed)
    model = CrossUMX(config.model_config(RATE)).to(device)
    stft = STFT(model.config.n_fft, model.config.hop_length)
    loss_fn = MultiDomainLoss.from_config(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    length = round(config.seq_seconds * RATE)
    sources = len(config.model.sources)

    def loader(batches: int) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        examples = _Examples(config.batch_size, sources, length, batches * config.batch_size)
        return DataLoader(examples, batch_size=config.batch_size, drop_last=True)

    events = NoTrainEvents()
    train_one_epoch(model, stft, loss_fn, loader(1), optimizer, device, amp, events)
    timed = loader(steps)
    _reset_peak(device)
    start = time.perf_counter()
    loss = train_one_epoch(model, stft, loss_fn, timed, optimizer, device, amp, events)
    _sync(device)
    seconds = time.perf_counter() - start
    row.samples_per_second = steps * config.batch_size / seconds
    row.peak_gpu_mib = _peak_mib(device)
    row.status = f"ok: {steps} steps, loss {loss:.4g}"


# ---------------------------------------------------------------------------------------------
# BSSEval


def score_row(check: Check) -> None:
    """The fast BSSEval v4 (``cumx eval``'s default backend) of one track, on the device."""
    seconds = check.sizes.score_seconds
    row = Row("bsseval (fast)", f"{seconds:g} s, 4 sources, {check.sizes.filters_len} taps")
    estimate = 0.0  # the first of its kind
    if not check.budget.allows(estimate):
        row.status = check.budget.skip_note(estimate)
        check.rows.append(row)
        return
    gen = torch.Generator().manual_seed(1)
    refs = 0.1 * torch.randn(4, 2, round(seconds * RATE), generator=gen)
    ests = refs + 0.05 * torch.randn(refs.shape, generator=gen)
    config = EvalConfig(filters_len=check.sizes.filters_len)
    start = time.perf_counter()
    try:
        warm = min(refs.shape[-1], 2 * RATE)  # kernels and FFT plans made before the clock
        score(refs[..., :warm], ests[..., :warm], RATE, config, device=check.device)
        _reset_peak(check.device)
        begin = time.perf_counter()
        result = score(refs, ests, RATE, config, device=check.device)
        took = time.perf_counter() - begin
        row.rtf_memory = took / seconds
        row.peak_gpu_mib = _peak_mib(check.device)
        row.status = f"ok: median SDR {float(np.nanmedian(result['SDR'])):.2f} dB"
    except Exception as exc:  # noqa: BLE001 - one failed row must not lose the table
        row.status = _failure(exc, check.device)
    row.seconds = time.perf_counter() - start
    check.rows.append(row)


# ---------------------------------------------------------------------------------------------
# Separation


def write_signal(path: Path, seconds: float) -> None:
    """A deterministic music-like stereo 16-bit WAV: tones, a bass line, noise bursts."""
    rng = np.random.default_rng(0)
    n = round(seconds * RATE)
    with sf.SoundFile(str(path), "w", RATE, 2, subtype="PCM_16") as f:
        for start in range(0, n, 60 * RATE):
            t = np.arange(start, min(n, start + 60 * RATE)) / RATE
            tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            bass = 0.3 * np.sin(2 * np.pi * 55 * t)
            noise = 0.05 * rng.standard_normal(t.size)
            f.write(np.stack([tone + bass + noise, 0.7 * tone + bass + noise], axis=1))


def settings(sizes: Sizes) -> list[tuple[float, int]]:
    """Every (chunk, batch) pair, in order of priority: the sum of their places in
    ``sizes.chunks`` and ``sizes.batches``, then the chunk's place."""
    pairs = [(ci + bi, ci, c, b) for ci, c in enumerate(sizes.chunks)
             for bi, b in enumerate(sizes.batches)]
    return [(c, b) for _, _, c, b in sorted(pairs)]


def separation_rows(check: Check) -> None:
    """Each file at each setting; a batch larger than a file's chunk count is not repeated."""
    torch.manual_seed(0)
    model = CrossUMX(check.sizes.model).eval()
    inputs = _Inputs(check.work, model, check.device)
    done: set[tuple[str, float, int]] = set()
    for chunk, batch in settings(check.sizes):
        for label, seconds in check.sizes.files:
            config = InferenceConfig(chunk_seconds=chunk, batch_size=batch)
            separator = Separator(model, config, device=check.device)
            effective = min(batch, len(separator.plan(round(seconds * RATE))))
            if (label, chunk, effective) in done:
                continue
            done.add((label, chunk, effective))
            check.rows.append(_separation_row(check, separator, inputs, label, seconds))


class _Inputs:
    """The input files, each written when a row first needs it, and one warm-up separation
    (CUDA's context, cuDNN and cuFFT plans) before the first row's clock starts."""

    def __init__(self, work: Path, model: CrossUMX, device: torch.device) -> None:
        self.work, self.model, self.device = work, model, device
        self.paths: dict[str, Path] = {}

    def path(self, label: str, seconds: float) -> Path:
        if not self.paths:
            warm = Separator(self.model, InferenceConfig(chunk_seconds=2.0, batch_size=1),
                             device=self.device)
            warm.separate(torch.zeros(1, 2, 3 * RATE).uniform_(-0.1, 0.1))
        if label not in self.paths:
            self.paths[label] = self.work / f"{label.replace(' ', '')}.wav"
            write_signal(self.paths[label], seconds)
        return self.paths[label]


def _separation_row(check: Check, separator: Separator, inputs: _Inputs, label: str,
                    seconds: float) -> Row:
    """In memory (``Separator.separate``), then the file to stems (``cumx_cli.separate_file``)."""
    row = Row("separate", label, chunk_seconds=separator.config.chunk_seconds,
              batch=separator.config.batch_size, audio_seconds=seconds)
    estimate = _separation_estimate(check.rows, label, seconds)
    if not check.budget.allows(estimate):
        row.status = check.budget.skip_note(estimate)
        return row
    start = time.perf_counter()
    try:
        path = inputs.path(label, seconds)
        mixture = torch.from_numpy(sf.read(str(path), dtype="float32", always_2d=True)[0].T.copy())
        start = time.perf_counter()  # the row's time: its two separations, not the input's writing
        _reset_peak(check.device)
        separator.separate(mixture[None])
        row.rtf_memory = (time.perf_counter() - start) / seconds
        del mixture
        out = check.work / "stems"
        begin = time.perf_counter()
        separate_file(path, out, model=separator)
        row.rtf_file = (time.perf_counter() - begin) / seconds
        row.peak_gpu_mib = _peak_mib(check.device)
        shutil.rmtree(out, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - one failed row must not lose the table
        row.status = _failure(exc, check.device)
    row.seconds = time.perf_counter() - start
    return row


def _separation_estimate(rows: list[Row], label: str, seconds: float) -> float:
    """MARGIN x the slowest measured seconds per audio second, of this file's rows (or, before
    the first, of every file's), times ``seconds``; 0 before the first separation row."""
    done = [r for r in rows if r.check == "separate" and r.seconds is not None and r.audio_seconds]
    same = [r for r in done if r.input == label] or done
    rates = [r.seconds / r.audio_seconds for r in same if r.seconds and r.audio_seconds]
    return MARGIN * seconds * max(rates) if rates else 0.0


def suggest_default(rows: Iterable[Row], memory_cap_mib: float = DEFAULT_MEMORY_CAP_MIB
                    ) -> tuple[float, int] | None:
    """The (chunk, batch) to make the CUDA default, from the longest file's separation rows.

    The rule: only settings whose peak GPU memory fits ``memory_cap_mib`` (the default must run
    on small cards); of those, the ones whose whole-file RTF is within :data:`EQUALLY_FAST` of
    the fastest; of those, the least peak memory, then the longer chunk (longer chunks give
    stems closer to whole-track separation, README "Choosing the chunk length"). None without
    a measured setting that fits.
    """
    measured = [r for r in rows if r.check == "separate" and r.rtf_file is not None
                and r.peak_gpu_mib is not None and r.chunk_seconds is not None
                and r.batch is not None and r.audio_seconds is not None]
    if not measured:
        return None
    longest = max(r.audio_seconds or 0.0 for r in measured)
    fits = [r for r in measured if r.audio_seconds == longest and r.peak_gpu_mib is not None
            and r.peak_gpu_mib <= memory_cap_mib]
    if not fits:
        return None
    fastest = min(r.rtf_file for r in fits if r.rtf_file is not None)
    fast = [r for r in fits if r.rtf_file is not None and r.rtf_file <= fastest * (1 + EQUALLY_FAST)]
    best = min(fast, key=lambda r: (r.peak_gpu_mib, -(r.chunk_seconds or 0.0)))
    assert best.chunk_seconds is not None and best.batch is not None
    return best.chunk_seconds, best.batch


# ---------------------------------------------------------------------------------------------
# The table


def _cell(key: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if key.startswith("rtf"):
            return f"{value:.4f}"
        return f"{value:.1f}" if key != "chunk_seconds" else f"{value:g}"
    return str(value).replace("|", "/")


def markdown(header: list[str], rows: list[Row], notes: list[str]) -> str:
    lines = [*header, "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        data = asdict(row)
        lines.append("| " + " | ".join(_cell(k, data[k]) for k, _ in COLUMNS) + " |")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _header(device: torch.device, args: argparse.Namespace) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    return [f"# cumx GPU check ({'quick' if args.quick else 'full'})", "",
            f"device {device} ({name}), torch {torch.__version__}{cuda}, cumx "
            f"{cumx_cli.__version__}, {torch.get_num_threads()} CPU threads, budget "
            f"{args.budget:g} s"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(text)


def run(args: argparse.Namespace) -> tuple[list[str], Check]:
    """Every part of the check, in order, within the budget; the header and the check."""
    start = time.perf_counter()
    device = resolve_device(args.device)  # ConfigError: main() reports it
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="cumx-gpu-check-") as tmp:
        check = Check(device, sizes, Budget(args.budget, start), Path(tmp))
        if not args.no_tests:
            check.rows.append(tests_row(check, args.tests))
        train_rows(check)
        score_row(check)
        separation_rows(check)
    if device.type == "cuda":
        best = suggest_default(check.rows)
        check.notes.append(
            "suggested CUDA default: " + (f"--chunk {best[0]:g} --batch-size {best[1]}" if best
                                          else "none measured within the memory cap")
            + f" (suggest_default: peak <= {DEFAULT_MEMORY_CAP_MIB:.0f} MiB, whole-file RTF "
            f"within {EQUALLY_FAST:.0%} of the fastest, then least memory, then longer chunk)")
    check.notes.append(f"total {time.perf_counter() - start:.0f} s; RTF = wall time / audio "
                       "duration; a batch larger than a file's chunk count is not repeated")
    return _header(device, args), check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds on a CPU")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the whole check; rows that would pass it are skipped")
    parser.add_argument("--tests", default="tests", help="what pytest -m gpu runs (default tests)")
    parser.add_argument("--no-tests", action="store_true", help="leave out the GPU-marked tests")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    parser.add_argument("--json", type=Path, help="also write the rows here (JSON)")
    args = parser.parse_args(argv)
    if args.budget < 0 or not math.isfinite(args.budget):
        parser.error(f"--budget must be 0 or more seconds, got {args.budget}")
    try:
        header, check = run(args)
    except ConfigError as exc:
        parser.error(str(exc))
    text = markdown(header, check.rows, check.notes)
    print(text, end="")
    if args.out is not None:
        _write(args.out, text)
    if args.json is not None:
        data = {"header": header, "columns": [k for k, _ in COLUMNS],
                "rows": [asdict(r) for r in check.rows], "notes": check.notes}
        _write(args.json, json.dumps(data, indent=2) + "\n")
    failed = [r for r in check.rows if r.status.startswith(("error", "out of", "timed out"))
              or re.search(r"\d+ (failed|errors?)\b", r.status)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
