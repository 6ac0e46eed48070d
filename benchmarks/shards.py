"""Wall time of ``cumx separate`` on a shared CPU machine, before and after the thread tuning.

"before" runs the command without ``cumx_cli.threads.tune_threads`` (torch's OpenMP threads spin
for a while each time they wait, the libgomp default); "after" is the normal ``cumx`` entry. Each
separates a 30 s stereo 44.1 kHz signal with full-size random X-UMX weights (hidden 512, four
sources), in fresh processes that decode, separate and write four stems. Three measurements:

* one file alone, on a quiet machine (what the tuning must not slow down);
* two shards at once (two processes, each its own file) against the same two one after the other;
* the file next to two busy processes (plain Python loops, each keeping one core busy) against the
  same file alone.

    python benchmarks/shards.py                # one round, about 2 minutes on 2 quiet cores
    python benchmarks/shards.py --repeats 3    # median of 3 rounds

Before and after run back to back for each measurement, first one then the other, the order
flipped each round, so that on a shared machine both meet much the same neighbours; each sample
also shows the CPU time other processes used meanwhile (from /proc/stat), to tell noise apart.

"after, N thread(s)" also runs the shards at once with ``OMP_NUM_THREADS`` = CPUs / shards each
(``--shard-threads``), as the README advises for N shards on one machine.

OpenMP and MKL variables in this environment are dropped for the child processes, so that
"before" is libgomp's default and "after" is what ``tune_threads`` chooses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.cumx import save_model

RATE = 44100
SOURCES = ("bass", "drums", "vocals", "other")
# The old entry: main() without tune_threads(). Typer reads its arguments from sys.argv[1:], which
# after ``-c`` are the ones given here.
BEFORE = "import cumx_cli.app as a; a._tune_allocator(); a.app()"
ENTRIES = {"before": [sys.executable, "-c", BEFORE], "after": [sys.executable, "-m", "cumx_cli"]}
BUSY = "while True: pass"


def make_model(path: Path) -> Path:
    """Full-size random X-UMX weights (the default architecture, bridged)."""
    torch.manual_seed(0)
    save_model(CrossUMX(ModelConfig(sources=SOURCES, bridge=True)), path)
    return path


def make_signal(path: Path, seconds: float, seed: int) -> Path:
    """A music-like stereo signal: a gated tone, a bass line and noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.2 * np.sin(2 * np.pi * (440 + 20 * seed) * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    noise = 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.7)
    sf.write(str(path), np.stack([tone + bass + noise, 0.7 * tone + bass + noise], axis=1), RATE,
             subtype="PCM_16")
    return path


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without OpenMP/MKL thread variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "MKL_"))}
    return {**env, **extra}


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used so far (0 where /proc/stat is missing)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle, iowait, steal = fields[3], fields[4], fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - iowait - steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def busy(count: int) -> Iterator[None]:
    """``count`` processes that each keep one core busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    time.sleep(0.5)  # let them start spinning before the timed run does
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@dataclass
class Sample:
    """One measurement: wall seconds, and CPU seconds that processes outside the benchmark used
    meanwhile (other users of a shared machine: the noise)."""

    wall: float
    foreign: float


def run_together(cmds: Sequence[list[str]], env: dict[str, str], busy_count: int = 0) -> Sample:
    """Start every command at once (next to ``busy_count`` busy loops); until the last exits."""
    with busy(busy_count):
        machine, ours, start = machine_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for cmd in cmds]
        codes = [proc.wait() for proc in procs]
        wall = time.perf_counter() - start
    # The busy loops were reaped too, so their CPU time counts as ours.
    foreign = (machine_cpu_seconds() - machine) - (children_cpu_seconds() - ours)
    if any(codes):
        raise SystemExit(f"command failed ({codes}): {' '.join(cmds[0])}")
    return Sample(wall, max(0.0, foreign))


@dataclass(frozen=True)
class Column:
    """One way of running the command: an entry, extra environment, and which measurements."""

    name: str
    entry: str  # a key of ENTRIES
    env: dict[str, str] = field(default_factory=dict)
    keys: tuple[str, ...] = ("alone", "together", "busy")


class Bench:
    """Samples per (measurement, column name)."""

    def __init__(self, model: Path, wavs: list[Path], out: Path, busy_count: int) -> None:
        self.model, self.wavs, self.out, self.busy_count = model, wavs, out, busy_count
        self.samples: dict[tuple[str, str], list[Sample]] = {}

    def cmds(self, entry: str) -> list[list[str]]:
        return [[*ENTRIES[entry], "separate", str(wav), "-m", str(self.model),
                 "-o", str(self.out / str(i)), "-q", "--device", "cpu"]
                for i, wav in enumerate(self.wavs)]

    def record(self, key: str, column: str, sample: Sample) -> None:
        self.samples.setdefault((key, column), []).append(sample)

    def round(self, columns: Sequence[Column]) -> None:
        """Every measurement once, each through the columns back to back (so that they all meet
        much the same neighbours on a shared machine)."""
        for key in ("alone", "together", "busy"):
            for col in (c for c in columns if key in c.keys):
                env, cmds = clean_env(col.env), self.cmds(col.entry)
                if key == "alone":  # each shard alone, one after the other
                    alone = [run_together([cmd], env) for cmd in cmds]
                    for sample in alone:
                        self.record("alone", col.name, sample)
                    self.record("sequential", col.name, Sample(sum(s.wall for s in alone),
                                                               sum(s.foreign for s in alone)))
                elif key == "together":
                    self.record(key, col.name, run_together(cmds, env))
                else:
                    self.record(key, col.name, run_together(cmds[:1], env, self.busy_count))

    def cell(self, key: str, column: str, base: tuple[str, str] | None = None) -> str:
        """The median wall time (or its ratio to ``base``'s), blank where not measured."""
        if (key, column) not in self.samples or (base is not None and base not in self.samples):
            return ""
        value = statistics.median(s.wall for s in self.samples[(key, column)])
        if base is None:
            return f"{value:7.1f} s"
        return f"{value / statistics.median(s.wall for s in self.samples[base]):7.2f}"


def report(bench: Bench, columns: Sequence[Column], shards: int, seconds: float) -> None:
    """The table of medians and ratios, then every sample."""
    names = [c.name for c in columns]
    # A column that skips a measurement takes its ratio's denominator from "after".
    base = {c.name: c.name if "alone" in c.keys else "after" for c in columns}
    print(f"\nmedian wall time, each process separating its own {seconds:g} s stereo file")
    print(f"  {'':36s}" + "".join(f"{n:>22s}" for n in names))
    rows = [("one file alone", "alone"), (f"{shards} shards one after the other", "sequential"),
            (f"{shards} shards at once", "together"),
            (f"one file next to {bench.busy_count} busy loops", "busy")]
    for label, key in rows:
        print(f"  {label:36s}" + "".join(f"{bench.cell(key, n):>22s}" for n in names))
    for label, num, den in (("at once / one after the other", "together", "sequential"),
                            ("next to busy loops / alone", "busy", "alone")):
        cells = [bench.cell(num, n, (den, base[n])) for n in names]
        print(f"  {label:36s}" + "".join(f"{c:>22s}" for c in cells))
    cells = [bench.cell("alone", n, ("alone", "before")) for n in names]
    print(f"  {'alone / before alone':36s}" + "".join(f"{c:>22s}" for c in cells))
    print("samples: wall s (CPU s that other processes used meanwhile; near 0 on a quiet machine)")
    for (key, column), samples in bench.samples.items():
        text = " ".join(f"{s.wall:.1f} ({s.foreign:.1f})" for s in samples)
        print(f"  {key:10s} {column:22s} {text}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each input")
    parser.add_argument("--shards", type=int, default=2, help="processes run at once")
    parser.add_argument("--busy", type=int, default=2, help="busy loops for the busy measurement")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds, the order of the columns flipped in each; medians shown")
    parser.add_argument("--shard-threads", type=int, default=None, metavar="N",
                        help="also run the shards at once with OMP_NUM_THREADS=N each, after the "
                        "tuning (default: CPUs / shards; 0 to skip)")
    parser.add_argument("--also", action="append", default=[], metavar="VAR=VALUE",
                        help="another column: the normal entry with this variable set (which "
                        "the tuning leaves alone), e.g. OMP_WAIT_POLICY=PASSIVE; repeatable")
    return parser.parse_args()


def columns_for(args: argparse.Namespace) -> list[Column]:
    columns = [Column("before", "before"), Column("after", "after")]
    for setting in args.also:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise SystemExit(f"--also {setting!r}: expected VAR=VALUE")
        columns.append(Column(setting, "after", {name: value}))
    threads = args.shard_threads
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // args.shards)
    if threads > 0:
        columns.append(Column(f"after, {threads} thread(s)", "after",
                              {"OMP_NUM_THREADS": str(threads)}, keys=("together",)))
    return columns


def main() -> None:
    args = parse_args()
    columns = columns_for(args)
    user = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "MKL_")))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} intra-op "
          f"threads, load average {os.getloadavg()[0]:.2f}; "
          f"{user + ' dropped for the runs' if user else 'no OpenMP variables set'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_model(root / "xumx.pt")
        wavs = [make_signal(root / f"shard{i}.wav", args.seconds, i) for i in range(args.shards)]
        bench = Bench(model, wavs, root / "out", args.busy)
        for repeat in range(max(1, args.repeats)):
            bench.round(columns if repeat % 2 == 0 else columns[::-1])
            print(f"round {repeat + 1}: load average {os.getloadavg()[0]:.2f}", flush=True)
    report(bench, columns, args.shards, args.seconds)


if __name__ == "__main__":
    main()
