"""Open-Unmix parity at full size: cumx's stems against openunmix's own ``Separator``.

Builds four full-size Open-Unmix target models (hidden 512, 3 BLSTM layers, n_fft 4096, hop 1024,
max_bin 1487) with random weights in openunmix's own folder layout, separates one synthetic
stereo input with openunmix (``load_separator(..., niter=1, wiener_win_len=300)``, as ``umx`` and
``openunmix.predict.separate`` do) and with cumx (whole track in one chunk, the family defaults),
and prints the SNR of each of cumx's stems against openunmix's. It also prints cumx with
``--wiener-window 0`` (one window for the whole chunk), which is what cumx did before it followed
openunmix's windows.

Run with a Python that has openunmix (and asteroid/norbert, which the fixture script imports):

    /tmp/peers-venv/bin/python benchmarks/umx_parity.py --seconds 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "peers"))

import make_peer_fixtures as fx  # noqa: E402
import openunmix.model  # noqa: E402
import openunmix.utils  # noqa: E402

from cumx_cli.engine.config import InferenceConfig  # noqa: E402
from cumx_cli.engine.inference.separator import Separator  # noqa: E402
from cumx_cli.engine.weights.resolver import load_model  # noqa: E402

RATE, N_FFT, N_HOP, HIDDEN, MAX_BIN = 44100, 4096, 1024, 512, 1487
TARGETS = ["vocals", "drums", "bass", "other"]  # openunmix's own target order (umxhq)


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """Tones, noise bursts, clicks and a -60 dB noise floor, (channel, time) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros((2, n))
    for c in range(2):
        for f in rng.uniform(50, 6000, 8):
            swell = 0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(1, 5) + rng.uniform(0, 6))
            out[c] += rng.uniform(0.02, 0.2) * swell * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
        for start in range(int(0.3 * RATE), n - RATE // 4, int(0.7 * RATE)):
            out[c, start : start + RATE // 4] += 0.1 * rng.standard_normal(RATE // 4) * np.hanning(RATE // 4)
        out[c] += 1e-3 * rng.standard_normal(n)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def make_folder(folder: Path, mix: np.ndarray) -> None:
    stft, _ = openunmix.model.make_filterbanks(n_fft=N_FFT, n_hop=N_HOP, center=True,
                                               method="torch", sample_rate=RATE)
    with torch.no_grad():
        spec = openunmix.model.ComplexNorm(mono=False)(stft(torch.from_numpy(mix)[None]))
    for i, target in enumerate(TARGETS):
        gen = torch.Generator().manual_seed(3000 + i)
        model = openunmix.model.OpenUnmix(nb_bins=N_FFT // 2 + 1, nb_channels=2,
                                          hidden_size=HIDDEN, max_bin=MAX_BIN)
        fx._randomise(model, gen)
        fx._calibrate_bn(model, lambda m=model: m(spec.clone()), gen)
        tmp = folder / f"{target}.pth"
        torch.save(model.state_dict(), tmp)
        sha = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
        tmp.rename(folder / f"{target}-{sha}.pth")
        args = dict(fx.UMX_TRAIN_ARGS, target=target, nfft=N_FFT, nhop=N_HOP, hidden_size=HIDDEN)
        (folder / f"{target}.json").write_text(json.dumps({"args": args}))
    (folder / "separator.json").write_text(json.dumps(
        {"nfft": N_FFT, "nhop": N_HOP, "sample_rate": RATE, "nb_channels": 2}))


def snr(est: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (est - ref).pow(2).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    mix = music(args.seconds)
    frames = 1 + mix.shape[-1] // N_HOP
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_folder(folder, mix)
        sep = openunmix.utils.load_separator(str(folder), targets=TARGETS, niter=1, residual=False,
                                             wiener_win_len=300, device="cpu", pretrained=True,
                                             filterbank="torch")
        sep.freeze()
        with torch.no_grad():
            theirs = sep(torch.from_numpy(mix)[None])[0]
        model = load_model(folder)
        x = torch.from_numpy(mix)[None]
        rows = []
        for label, window in (("cumx (family default: 300-frame windows)", None),
                              ("cumx --wiener-window 0 (whole chunk)", 0)):
            config = InferenceConfig(niter=1, chunk_seconds=args.seconds + 1, wiener_window=window)
            ours = Separator(model, config).separate(x)[0]
            rows.append((label, [snr(ours[model.sources.index(t)], theirs[j])
                                 for j, t in enumerate(TARGETS)]))
    print(f"input {args.seconds:.1f} s = {frames} frames ({-(-frames // 300)} Wiener windows of 300)")
    print(f"{'SNR vs openunmix (dB)':44s}" + "".join(f"{t:>9s}" for t in TARGETS))
    for label, values in rows:
        print(f"{label:44s}" + "".join(f"{v:9.1f}" for v in values))


if __name__ == "__main__":
    main()
