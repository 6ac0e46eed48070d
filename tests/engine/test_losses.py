"""The paper's losses against a direct transcription of the spec's formulas (spec §2)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import TrainConfig
from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.losses import MultiDomainLoss, source_combinations, spectral_mse, weighted_sdr
from cumx_cli.engine.training.loop import model_outputs
from tests.conftest import random_model, tiny_config

#: The paper's loss, with the training recipe's values.
RECIPE = MultiDomainLoss.from_config(TrainConfig())


def reference_loss(est_mag, tgt_mag, est_wave, tgt_wave, mix, alpha, combine, multidomain, trim,
                   eps=1e-10):
    """Plain numpy loops: spec §2.2-2.4, one combination, batch item and channel at a time."""
    s = est_mag.shape[1]
    sizes = range(1, s) if combine and s > 1 else [1]
    combos = [c for k in sizes for c in itertools.combinations(range(s), k)]
    lf = np.mean([np.mean((est_mag[:, list(c)].sum(1) - tgt_mag[:, list(c)].sum(1)) ** 2) for c in combos])
    if not multidomain:
        return lf
    n = min(est_wave.shape[-1], tgt_wave.shape[-1], mix.shape[-1])
    rows = []
    for c in combos:
        for b in range(mix.shape[0]):
            for ch in range(mix.shape[1]):
                y = tgt_wave[b, list(c), ch, :n].sum(0)[trim : n - trim]
                yh = est_wave[b, list(c), ch, :n].sum(0)[trim : n - trim]
                m = mix[b, ch, :n][trim : n - trim]
                noise, noise_h = m - y, m - yh
                a = (y @ y) / (y @ y + noise @ noise + eps)

                def cos(u, v):
                    return (u @ v) / (np.sqrt(eps + u @ u) * np.sqrt(eps + v @ v) + eps)

                rows.append(-a * cos(yh, y) - (1 - a) * cos(noise_h, noise))
    return lf + alpha * (1 + np.mean(rows))


@pytest.mark.parametrize("combine", [True, False])
@pytest.mark.parametrize("multidomain", [True, False])
@pytest.mark.parametrize(("sources", "channels"), [(4, 2), (3, 1)])
def test_loss_equals_the_spec_formulas(combine: bool, multidomain: bool, sources: int, channels: int) -> None:
    rng = np.random.default_rng(sources + channels)
    est_mag = rng.random((2, sources, channels, 9, 5))
    tgt_mag = rng.random((2, sources, channels, 9, 5))
    tgt_wave = rng.standard_normal((2, sources, channels, 700))
    est_wave = tgt_wave[..., :650] + 0.5 * rng.standard_normal((2, sources, channels, 650))
    mix = tgt_wave.sum(1)
    loss = MultiDomainLoss(alpha=10.0, multidomain=multidomain, combine=combine, trim=20)
    terms = loss(*(torch.from_numpy(a) for a in (est_mag, tgt_mag, est_wave, tgt_wave, mix)))
    expected = reference_loss(est_mag, tgt_mag, est_wave, tgt_wave, mix, 10.0, combine, multidomain, 20)
    assert float(terms.total) == pytest.approx(expected, rel=1e-10)


def test_combination_counts_and_order() -> None:
    assert len(source_combinations(4)) == 14  # 2^4 - 2: the full set is excluded
    assert source_combinations(4)[:5] == ((0,), (1,), (2,), (3,), (0, 1))
    assert source_combinations(4)[-1] == (1, 2, 3)
    assert len(source_combinations(5)) == 2**5 - 2
    assert source_combinations(4, combine=False) == ((0,), (1,), (2,), (3,))


def test_perfect_estimates_minimise_each_term() -> None:
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.standard_normal((2, 4, 2, 3000)))
    mag = torch.from_numpy(rng.random((2, 4, 2, 9, 5)))
    terms = RECIPE(mag, mag, wave, wave, wave.sum(1))
    assert float(terms.freq) == 0.0
    assert float(terms.time) == pytest.approx(0.0, abs=1e-9)  # wSDR = -1 on every row
    worse = RECIPE(mag, mag, -wave, wave, wave.sum(1))
    assert float(worse.time) > 1.0


def test_alpha_weights_the_time_term() -> None:
    rng = np.random.default_rng(1)
    args = [torch.from_numpy(a) for a in (rng.random((1, 4, 2, 9, 5)), rng.random((1, 4, 2, 9, 5)),
                                          rng.standard_normal((1, 4, 2, 900)),
                                          rng.standard_normal((1, 4, 2, 900)))]
    mix = args[3].sum(1)
    a1 = MultiDomainLoss(alpha=1.0, multidomain=True, combine=True, trim=200)(*args, mix)
    a3 = MultiDomainLoss(alpha=3.0, multidomain=True, combine=True, trim=200)(*args, mix)
    assert float(a3.total - a1.total) == pytest.approx(2 * float(a1.time), rel=1e-12)
    assert float(spectral_mse(args[0], args[1])) == pytest.approx(float(((args[0] - args[1]) ** 2).mean()))
    assert weighted_sdr(args[2][0, 0], args[3][0, 0], mix[0]).shape == (2,)


def test_istft_per_source_equals_istft_per_combination() -> None:
    """Summing per-source iSTFTs gives each combination's iSTFT of the summed masked STFT."""
    model = random_model(tiny_config())
    stft = STFT(4096, 1024)
    gen = torch.Generator().manual_seed(0)
    stems = 0.1 * torch.randn(2, 4, 2, 44100, generator=gen)
    mixture = stems.sum(1)
    est_mag, tgt_mag, est_wave = model_outputs(model, stft, mixture, stems, True)
    fast = RECIPE(est_mag, tgt_mag, est_wave, stems, mixture)
    # the slow way: one iSTFT per combination of the summed masked complex spectrogram
    mix_stft = stft(mixture)
    masks = est_mag / mix_stft.abs().unsqueeze(1)
    length = (mix_stft.shape[-1] - 1) * 1024
    rows, freq = [], []
    for combo in source_combinations(4):
        idx = list(combo)
        wave = stft.inverse(masks[:, idx].sum(1) * mix_stft, length)
        target = stems[:, idx].sum(1)[..., :length]
        rows.append(weighted_sdr(wave, target, mixture[..., :length], trim=200))
        freq.append(((est_mag[:, idx].sum(1) - tgt_mag[:, idx].sum(1)) ** 2).mean())
    slow_total = torch.stack(freq).mean() + 10 * (1 + torch.stack(rows).mean())
    assert float(fast.total.detach()) == pytest.approx(float(slow_total.detach()), rel=1e-5)
