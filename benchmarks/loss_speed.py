"""Forward + backward time of the Combination Loss: one iSTFT per source vs one per combination.

The time-domain term needs each combination's waveform. The iSTFT is linear, so cumx makes one
waveform per source and sums them per combination (4 iSTFTs for 4 sources); the direct way makes
one iSTFT of the summed masked spectrogram per combination (14). Both give the same loss
(tests/engine/test_losses.py); this prints their times at the paper's batch (16 x 6 s).

    python benchmarks/loss_speed.py [--batch 16] [--seconds 6] [--repeats 3]

``--sources 2,4,6`` measures instead what the Combination Loss costs as the number of sources J
grows: the forward + backward time of the whole loss (MDL on, per-source iSTFTs) over the
2^J - 2 proper subsets against the J single sources (``--no-cl``), in interleaved pairs, best of
``--repeats``; a batch of 4 x 6 s by default there.

    flock /tmp/cumx-heavy.lock python benchmarks/loss_speed.py --sources 2,4,6 [--batch 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.losses import MultiDomainLoss, source_combinations, weighted_sdr


def per_source(masks, mix_stft, stft, mixture, stems, target_mag, loss_fn):
    length = (mix_stft.shape[-1] - 1) * stft.hop_length
    est_wave = stft.inverse(masks * mix_stft.unsqueeze(1), length)
    est_mag = masks * mix_stft.abs().unsqueeze(1)
    return loss_fn(est_mag, target_mag, est_wave, stems, mixture).total


def per_combination(masks, mix_stft, stft, mixture, stems, target_mag, loss_fn):
    length = (mix_stft.shape[-1] - 1) * stft.hop_length
    est_mag = masks * mix_stft.abs().unsqueeze(1)
    freq, rows = [], []
    for combo in source_combinations(masks.shape[1]):
        idx = list(combo)
        wave = stft.inverse(masks[:, idx].sum(1) * mix_stft, length)
        rows.append(weighted_sdr(wave, stems[:, idx].sum(1)[..., :length],
                                 mixture[..., :length], trim=loss_fn.trim))
        freq.append(((est_mag[:, idx].sum(1) - target_mag[:, idx].sum(1)) ** 2).mean())
    return torch.stack(freq).mean() + loss_fn.alpha * (1 + torch.stack(rows).mean())


def sweep(sources: list[int], batch: int, seconds: float, repeats: int) -> None:
    """The Combination Loss's cost against single sources for each J in ``sources``."""
    stft = STFT(4096, 1024)
    recipe = TrainConfig()
    losses = {cl: MultiDomainLoss(alpha=recipe.alpha, multidomain=True, combine=cl,
                                  trim=recipe.wsdr_trim) for cl in (True, False)}
    print(f"batch {batch} x {seconds:g} s, MDL on, {torch.get_num_threads()} threads; "
          "forward + backward of the loss, best of", repeats)
    for j in sources:
        stems = 0.1 * torch.randn(batch, j, 2, int(seconds * 44100))
        mixture = stems.sum(1)
        mix_stft = stft(mixture)
        target_mag = stft(stems).abs()
        base = torch.rand(batch, j, 2, 2049, mix_stft.shape[-1])
        best = {True: float("inf"), False: float("inf")}
        for _ in range(repeats):
            for cl in (True, False):  # interleaved: both see the same machine load
                masks = base.clone().requires_grad_()
                start = time.perf_counter()
                per_source(masks, mix_stft, stft, mixture, stems, target_mag, losses[cl]).backward()
                best[cl] = min(best[cl], time.perf_counter() - start)
        subsets = len(source_combinations(j))
        print(f"  J={j}: {subsets:3d} subsets {best[True]:6.2f} s, {j} single sources "
              f"{best[False]:6.2f} s, ratio {best[True] / best[False]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=None, help="16; 4 with --sources")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sources", default=None, help="comma-separated J values to sweep")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.sources:
        sweep([int(x) for x in args.sources.split(",")], args.batch or 4, args.seconds,
              args.repeats)
        return
    args.batch = args.batch or 16
    stft = STFT(4096, 1024)
    stems = 0.1 * torch.randn(args.batch, 4, 2, int(args.seconds * 44100))
    mixture = stems.sum(1)
    mix_stft = stft(mixture)
    target_mag = stft(stems).abs()
    loss_fn = MultiDomainLoss.from_config(TrainConfig())
    print(f"batch {args.batch} x {args.seconds:g} s, 4 sources, 14 combinations, "
          f"{torch.get_num_threads()} threads")
    base = torch.rand(args.batch, 4, 2, 2049, mix_stft.shape[-1])
    times = {}
    for name, fn in (("per source (cumx)", per_source), ("per combination", per_combination)):
        best = float("inf")
        for _ in range(args.repeats):
            masks = base.clone().requires_grad_()
            start = time.perf_counter()
            value = fn(masks, mix_stft, stft, mixture, stems, target_mag, loss_fn)
            value.backward()
            best = min(best, time.perf_counter() - start)
        times[name] = (best, float(value.detach()))
        print(f"  {name:20s} {best:7.2f} s   loss {float(value):.6f}")
    ratio = times["per source (cumx)"][0] / times["per combination"][0]
    print(f"  ratio {ratio:.2f} (target <= 0.5); loss values differ by "
          f"{abs(times['per source (cumx)'][1] - times['per combination'][1]):.2e}")


if __name__ == "__main__":
    main()
