"""How chunk length trades speed, memory and faithfulness to whole-track separation.

Separates the same 60 s music-like signal with a full-size random X-UMX model whole (one
chunk) and with several chunk lengths (1 s cross-fade), then prints, per chunk length, the
separation time, the peak memory of one batch and the SNR of the chunked stems against the
whole-track stems. This is the measurement behind the default ``--chunk``.

    python benchmarks/chunk_quality.py [--seconds 60] [--chunks 10,20,30,45]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from cumx_cli.engine.config import InferenceConfig, ModelConfig
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model import CrossUMX


def signal(seconds: float, rate: int = 44100) -> torch.Tensor:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    bass = 0.3 * np.sin(2 * np.pi * 55 * t)
    noise = 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.7)
    x = np.stack([tone + bass + noise, 0.7 * tone + bass + noise])
    return torch.from_numpy(x.astype(np.float32))[None]


def snr(est: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (est - ref).pow(2).sum().clamp_min(1e-20)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chunks", default="10,20,30,45")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = CrossUMX(ModelConfig()).eval()
    x = signal(args.seconds)
    whole = Separator(model, InferenceConfig(chunk_seconds=args.seconds + 1)).separate(x)
    print(f"{args.seconds:g} s input, full-size random X-UMX, niter 1, 1 s overlap, "
          f"{torch.get_num_threads()} threads")
    print(f"{'chunk s':>8} {'time s':>8} {'RSS MiB':>8} {'min SNR dB':>11} {'mean SNR dB':>12}")
    for chunk in [float(c) for c in args.chunks.split(",")]:
        sep = Separator(model, InferenceConfig(chunk_seconds=chunk))
        start = time.perf_counter()
        out = sep.separate(x)
        took = time.perf_counter() - start
        snrs = [snr(out[0, j], whole[0, j]) for j in range(out.shape[1])]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{chunk:8g} {took:8.1f} {rss:8.0f} {min(snrs):11.1f} {np.mean(snrs):12.1f}")


if __name__ == "__main__":
    main()
