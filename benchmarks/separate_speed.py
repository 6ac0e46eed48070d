"""Speed and memory of ``cumx separate`` against openunmix's ``Separator`` (same weights).

Both tools separate the same stereo 44.1 kHz signal with the same full-size random Open-Unmix
weights (hidden 512, four targets, Wiener niter 1), each in a fresh process that decodes the
file, separates it and writes four stems: whole-process wall time and peak RSS are compared.
cumx is also timed with the bridged (X-UMX) model built from the same tensors. Then cumx's peak
RSS is measured for longer inputs to show it stays flat.

    python benchmarks/separate_speed.py                      # 3 min speed + 3/10/20 min memory
    python benchmarks/separate_speed.py --minutes 1 --memory-minutes ""   # quick look
    python benchmarks/separate_speed.py --repeats 3 --memory-minutes ""   # median of 3 pairs

openunmix is used when importable (``pip install openunmix``), or from another interpreter
(``--peer-python /tmp/peers-venv/bin/python``, a venv with openunmix, torch and soundfile);
otherwise only cumx is timed. The load average is printed first: compare ratios of pairs
measured together, never seconds from different runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cumx_cli.engine.config import ModelConfig
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.weights.formats.cumx import save_model

RATE = 44100
TARGETS = ("vocals", "drums", "bass", "other")  # openunmix's own target order (umxhq)

OPENUNMIX_SCRIPT = r"""
import sys, json, torch, numpy as np, soundfile as sf
from openunmix import utils
folder, wav, out = sys.argv[1:4]
sep = utils.load_separator(folder, targets=%r, niter=1, residual=False, wiener_win_len=300,
                           device="cpu", pretrained=True, filterbank="torch")
sep.freeze()
audio, rate = sf.read(wav, dtype="float32", always_2d=True)
with torch.no_grad():
    est = sep(torch.from_numpy(audio.T.copy())[None])[0]
for name, stem in zip(%r, est):
    sf.write(f"{out}/{name}.wav", stem.numpy().T, rate, subtype="PCM_16")
""" % (list(TARGETS), list(TARGETS))  # noqa: UP031 - a script template with f-strings of its own


def make_weights(folder: Path) -> Path:
    """Random full-size UMX weights as an Open-Unmix folder, plus the bridged cumx .pt."""
    torch.manual_seed(0)
    model = CrossUMX(ModelConfig(sources=TARGETS, bridge=False))
    folder.mkdir(parents=True, exist_ok=True)
    args = {"nfft": 4096, "nhop": 1024, "nb_channels": 2, "hidden_size": 512, "sample_rate": RATE}
    for name, net in model.nets.items():
        torch.save(net.state_dict(), folder / f"{name}.pth")
        (folder / f"{name}.json").write_text(json.dumps({"args": args}))
    (folder / "separator.json").write_text(json.dumps(
        {"nfft": 4096, "nhop": 1024, "sample_rate": RATE, "nb_channels": 2}))
    bridged = CrossUMX(ModelConfig(sources=TARGETS, bridge=True))
    bridged.load_state_dict(model.state_dict())
    save_model(bridged, folder.parent / "xumx.pt")
    return folder.parent / "xumx.pt"


def make_signal(path: Path, minutes: float) -> None:
    """A deterministic music-like stereo signal: tones, a bass line, noise bursts."""
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * RATE)
    with sf.SoundFile(str(path), "w", RATE, 2, subtype="PCM_16") as f:
        block = 60 * RATE
        for start in range(0, n, block):
            t = np.arange(start, min(n, start + block)) / RATE
            tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            bass = 0.3 * np.sin(2 * np.pi * 55 * t)
            noise = 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.7)
            left, right = tone + bass + noise, 0.7 * tone + bass + noise
            f.write(np.stack([left, right], axis=1).astype(np.float32))


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that child alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024


def cumx_cmd(wav: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cumx_cli", "separate", str(wav), "-m", str(model),
            "-o", str(out), "-q", "--device", "cpu"]


def _has_openunmix(python: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("openunmix") is not None
    probe = subprocess.run([python, "-c", "import openunmix"], capture_output=True)
    return probe.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length for the speed test")
    parser.add_argument("--memory-minutes", default="3,10,20",
                        help="comma-separated lengths for the memory test ('' to skip)")
    parser.add_argument("--no-openunmix", action="store_true", help="time cumx only")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the interpreter that runs openunmix (default: this one)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time cumx and openunmix alternately this many times and report "
                        "every pair's ratio and their median (a shared VM drifts)")
    args = parser.parse_args()
    have_umx = not args.no_openunmix and _has_openunmix(args.peer_python)
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"openunmix {'yes' if have_umx else 'not installed'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        xumx = make_weights(root / "umx")
        wav = root / f"signal_{args.minutes:g}min.wav"
        make_signal(wav, args.minutes)
        rows = []
        script = root / "umx_run.py"
        script.write_text(OPENUNMIX_SCRIPT)
        (root / "out_umx").mkdir()
        ratios = []
        for _ in range(max(1, args.repeats)):
            wall, rss = timed(cumx_cmd(wav, root / "umx", root / "out_cumx"))
            rows.append(("cumx UMX (same weights)", wall, rss))
            if have_umx:
                wall_u, rss_u = timed([args.peer_python, str(script), str(root / "umx"), str(wav),
                                       str(root / "out_umx")])
                rows.append(("openunmix Separator", wall_u, rss_u))
                ratios.append(wall / wall_u)
        wall_x, rss_x = timed(cumx_cmd(wav, xumx, root / "out_cumx_x"))
        rows.append(("cumx X-UMX (bridged)", wall_x, rss_x))
        if have_umx:
            a = sf.read(root / "out_cumx" / wav.stem / "vocals.wav", dtype="float32")[0]
            b = sf.read(root / "out_umx" / "vocals.wav", dtype="float32")[0]
            snr = 10 * np.log10((b**2).sum() / max(((a - b) ** 2).sum(), 1e-20))
        print(f"\nspeed: {args.minutes:g} min stereo 44.1 kHz, niter 1, whole process")
        for name, w, r in rows:
            print(f"  {name:26s} {w:7.1f} s   peak RSS {r:7.0f} MiB")
        if have_umx:
            pairs = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"  ratio cumx / openunmix     {float(np.median(ratios)):7.2f}   (target <= 0.22; "
                  f"median of {len(ratios)} alternating pair(s): {pairs})")
            print(f"  RSS ratio cumx / openunmix {rows[0][2] / rss_u:7.2f}")
            print(f"  vocals SNR cumx vs openunmix (chunked vs whole-track): {snr:.1f} dB")
        lengths = [float(m) for m in args.memory_minutes.split(",") if m.strip()]
        if lengths:
            print("\nmemory: cumx X-UMX peak RSS by input length (target <= 2048 MiB, flat)")
        for minutes in lengths:
            long_wav = root / f"long_{minutes:g}.wav"
            make_signal(long_wav, minutes)
            wall, rss = timed(cumx_cmd(long_wav, xumx, root / "out_long"))
            print(f"  {minutes:5g} min  {wall:7.1f} s   peak RSS {rss:7.0f} MiB")
            long_wav.unlink()


if __name__ == "__main__":
    main()
