"""Whole-process evaluation speed: ``cumx eval --estimates`` against museval's own command path.

Writes ``--tracks`` synthetic four-source stereo tracks of ``--seconds`` each (the stems and
estimates of ``eval_speed.py``) as a MUSDB18-HQ test folder and an estimates folder, then times,
as separate processes, what a user runs:

* ``cumx eval --musdb ROOT --estimates EST --out OUT`` (interpreter start, imports, reading,
  BSSEval, the lag check, the reports and the box plots included);
* museval's ``eval_dir(reference_dir, estimates_dir, output_dir)`` for each track, in one
  Python process (museval's import needs ffmpeg on PATH, through musdb).

It prints both wall times and the ratio, alternating the two ``--repeats`` times.

    python benchmarks/eval_process.py [--tracks 3] [--seconds 60] [--repeats 1]
        [--cumx-env OMP_WAIT_POLICY=ACTIVE] [--no-museval]

The load average is printed before every run: on a shared machine, repeat when it is over 1.5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_speed import RATE, estimates, stems  # noqa: E402

SOURCES = ("vocals", "drums", "bass", "other")


def write_data(root: Path, tracks: int, seconds: float) -> tuple[Path, Path]:
    data, est = root / "data", root / "est"
    for n in range(tracks):
        name = f"Track {n:02d}"
        refs = stems(seconds, seed=n)
        ests = estimates(refs, seed=100 + n)
        folder, out = data / "test" / name, est / name
        stems_only = root / "refs" / name
        for made in (folder, out, stems_only):
            made.mkdir(parents=True)
        for j, source in enumerate(SOURCES):
            sf.write(folder / f"{source}.wav", refs[j].T.numpy(), RATE, subtype="PCM_16")
            sf.write(stems_only / f"{source}.wav", refs[j].T.numpy(), RATE, subtype="PCM_16")
            sf.write(out / f"{source}.wav", ests[j].T.clamp(-1, 1).numpy(), RATE, subtype="FLOAT")
        sf.write(folder / "mixture.wav", refs.sum(0).T.clamp(-1, 1).numpy(), RATE, subtype="PCM_16")
    return data, est


# eval_dir scores every .wav of the reference folder, so it is given the stems without mixture.wav.
MUSEVAL = """
import sys, museval
from pathlib import Path
refs, est, out = map(Path, sys.argv[1:4])
for track in sorted(refs.iterdir()):
    museval.eval_dir(str(track), str(est / track.name), output_dir=str(out))
"""


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (Linux), printed with every run: a busy machine
    makes both times longer, and not by the same factor."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    print(f"  load average before {cmd[2] if cmd[1] == '-m' else 'museval'}: {load_average()}",
          flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cumx-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set this in cumx's environment only, e.g. OMP_WAIT_POLICY=ACTIVE "
                        "(repeat for more)")
    parser.add_argument("--no-museval", action="store_true",
                        help="time cumx only (no ratio): for comparing cumx settings")
    args = parser.parse_args()
    cumx_env = dict(item.split("=", 1) for item in args.cumx_env)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, est = write_data(root, args.tracks, args.seconds)
        cumx_times, museval_times = [], []
        for k in range(args.repeats):
            cumx_times.append(timed([sys.executable, "-m", "cumx_cli", "-q", "eval", "--musdb",
                                     str(data), "--estimates", str(est), "--out",
                                     str(root / f"cumx{k}")], cumx_env or None))
            if args.no_museval:
                continue
            museval_times.append(timed([sys.executable, "-c", MUSEVAL, str(root / "refs"), str(est),
                                        str(root / f"museval{k}")]))
    c = statistics.median(cumx_times)
    print(f"whole process, {args.tracks} tracks of {args.seconds:g} s, median of {args.repeats}"
          f"{'; cumx with ' + ' '.join(args.cumx_env) if args.cumx_env else ''}:")
    print(f"  cumx eval --estimates   {c:7.1f} s   ({', '.join(f'{t:.1f}' for t in cumx_times)})")
    if args.no_museval:
        return
    m = statistics.median(museval_times)
    print(f"  museval eval_dir        {m:7.1f} s   ({', '.join(f'{t:.1f}' for t in museval_times)})")
    print(f"  speed-up: {m / c:.1f}x")


if __name__ == "__main__":
    main()
