"""Fine-tuning vs training from scratch on a small new data set, on synthetic data.

Data set A (cumx's synthetic style "a", seed 0) and data set B (style "b": other timbres,
tempi and registers, seed 1; fewer training tracks) are written with
``cumx_cli.engine.data.synth``. A model is trained from scratch on A; then, on B, the same
number of epochs (the same optimizer steps) is run three ways: from scratch at the recipe's
learning rate, and fine-tuned from A's ``best.pt`` (``TrainConfig.init``) at each of ``--lrs``.
Each run's ``best.pt`` separates B's test tracks (cumx's Separator: Wiener filter, 1 iteration)
and is scored with the global SDR per source, ``10 log10(sum s^2 / sum (s - s_hat)^2)`` over a
whole track (demucs's "new SDR"), averaged over tracks; the mixture as every estimate is the
baseline. Wall-clock minutes of every run are printed beside its epochs.

It also measures what the bridge does when the sources change without any training: A's model
mapped onto ``vocals,accompaniment`` (``accompaniment`` a copy of ``vocals``' network, the
other three dropped) against A's model as trained, on A's test tracks, vocals SDR.

    flock /tmp/cumx-heavy.lock python benchmarks/finetune.py [--workdir DIR] [--epochs-a 12]
        [--epochs-b 8] [--excerpts 16] [--lrs 1e-3,1e-4] [--hidden 64] [--layers 2]

About 10 minutes on 2 CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import time
from pathlib import Path

import torch

from cumx_cli.engine.config import InferenceConfig, ModelConfig, TrainConfig
from cumx_cli.engine.data.musdb import load_tracks
from cumx_cli.engine.data.synth import generate_synthetic_musdb
from cumx_cli.engine.inference.separator import Separator
from cumx_cli.engine.model import CrossUMX
from cumx_cli.engine.training.init import init_model_config, transfer_weights
from cumx_cli.engine.training.loop import fit
from cumx_cli.engine.weights.resolver import load_model

FOUR = ("bass", "drums", "vocals", "other")


def global_sdr(model: CrossUMX, root: Path, recipes: dict[str, tuple[str, ...]] | None = None
               ) -> tuple[dict[str, float], dict[str, float]]:
    """Mean global SDR per source over ``root``'s test tracks, and the mixture's (baseline).

    ``recipes`` maps a source that is a sum of stems to them (``accompaniment``).
    """
    recipes = recipes or {}
    stems = sorted({s for name in model.sources for s in recipes.get(name, (name,))})
    separator = Separator(model, InferenceConfig(device="cpu"))
    sdr: dict[str, list[float]] = {s: [] for s in model.sources}
    base: dict[str, list[float]] = {s: [] for s in model.sources}
    for track in load_tracks(root, "test", tuple(stems)):
        mixture = track.read("mixture")
        estimates = separator.process(mixture[None])[0].double()
        for j, name in enumerate(model.sources):
            ref = sum(track.read(s).double() for s in recipes.get(name, (name,)))
            assert isinstance(ref, torch.Tensor)
            energy = float(ref.pow(2).sum())
            sdr[name].append(10 * math.log10(energy / float((ref - estimates[j]).pow(2).sum())))
            base[name].append(10 * math.log10(energy / float((ref - mixture.double()).pow(2).sum())))
    return ({s: sum(v) / len(v) for s, v in sdr.items()},
            {s: sum(v) / len(v) for s, v in base.items()})


def _run(config: TrainConfig, root: Path, out: Path, cache: Path,
         init: CrossUMX | None = None) -> tuple[float, int]:
    """Train into ``out`` (replaced); wall-clock minutes and the best epoch."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    results = fit(config, root, out, cache_dir=cache, init_model=init)
    best = max((r for r in results if r.best), key=lambda r: r.epoch).epoch
    return (time.perf_counter() - start) / 60, best


def _line(name: str, epochs: int, minutes: float, best: int, sdr: dict[str, float]) -> str:
    mean = sum(sdr.values()) / len(sdr)
    per = "  ".join(f"{s} {v:6.2f}" for s, v in sdr.items())
    return f"  {name:28s} {epochs:3d} epochs {minutes:5.1f} min (best epoch {best})  mean {mean:6.2f}  {per}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cumx-finetune"))
    parser.add_argument("--epochs-a", type=int, default=12)
    parser.add_argument("--epochs-b", type=int, default=8)
    parser.add_argument("--excerpts", type=int, default=16, help="excerpts per track per epoch")
    parser.add_argument("--lrs", default="1e-3,1e-4", help="fine-tuning learning rates")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of every track")
    args = parser.parse_args()
    work = args.workdir
    a, b, cache = work / "data-a", work / "data-b", work / "cache"
    if not (a / "train").is_dir():
        generate_synthetic_musdb(a, num_train=8, num_valid=2, num_test=3, seconds=args.seconds,
                                 seed=0, style="a")
    if not (b / "train").is_dir():
        generate_synthetic_musdb(b, num_train=3, num_valid=1, num_test=3, seconds=args.seconds,
                                 seed=1, style="b")
    recipe = TrainConfig(model=ModelConfig(hidden_size=args.hidden, num_layers=args.layers),
                         seq_seconds=2.0, samples_per_track=args.excerpts, batch_size=8, device="cpu",
                         epochs=args.epochs_a, seed=0)
    print(f"{torch.get_num_threads()} threads; hidden {args.hidden}, {args.layers} layers; "
          f"A: 8 training tracks, B: 3, {args.seconds:g} s each; batch 8 x 2 s, "
          f"{args.excerpts} excerpts per track per epoch")
    minutes, best = _run(recipe, a, work / "run-a", cache)
    model_a = load_model(work / "run-a" / "best.pt")
    sdr_a, _ = global_sdr(model_a, a)
    print("on A's test tracks:")
    print(_line("A from scratch, lr 1e-3", args.epochs_a, minutes, best, sdr_a))
    _bridge_effect(model_a, a)

    on_b = dataclasses.replace(recipe, epochs=args.epochs_b)
    sdr_zero, base = global_sdr(model_a, b)
    print(f"on B's test tracks (mixture as estimate: mean {sum(base.values()) / 4:.2f}):")
    print(_line("A's model, no step on B", 0, 0.0, 0, sdr_zero))
    minutes, best = _run(on_b, b, work / "run-b-scratch", cache)
    print(_line("B from scratch, lr 1e-3", args.epochs_b, minutes, best,
                global_sdr(load_model(work / "run-b-scratch" / "best.pt"), b)[0]))
    for lr in (float(x) for x in args.lrs.split(",")):
        tuned = dataclasses.replace(on_b, lr=lr, init=str(work / "run-a" / "best.pt"),
                                    model=init_model_config(model_a.config))
        out = work / f"run-b-init-{lr:g}"
        minutes, best = _run(tuned, b, out, cache, init=model_a)
        print(_line(f"B fine-tuned from A, lr {lr:g}", args.epochs_b, minutes, best,
                    global_sdr(load_model(out / "best.pt"), b)[0]))


def _bridge_effect(model: CrossUMX, root: Path) -> None:
    """Vocals SDR of ``model`` as trained, and mapped onto vocals + accompaniment (no step)."""
    mapped = CrossUMX(init_model_config(model.config, ("vocals", "accompaniment")))
    transfer_weights(model, mapped)
    as_trained, _ = global_sdr(model, root)
    after, _ = global_sdr(mapped.eval(), root, {"accompaniment": ("bass", "drums", "other")})
    print(f"  bridge: vocals {as_trained['vocals']:.2f} dB with its 4 trained branches; mapped "
          f"onto vocals,accompaniment (a copy of vocals) before any step: vocals "
          f"{after['vocals']:.2f} dB, accompaniment {after['accompaniment']:.2f} dB")


if __name__ == "__main__":
    main()
