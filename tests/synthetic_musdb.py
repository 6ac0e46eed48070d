"""Synthetic signals and a MUSDB18-HQ-layout folder for the evaluation tests (no real data)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from cumx_cli.engine.data.musdb import MUSDB_TARGETS

RATE = 44100
SOURCES = MUSDB_TARGETS  # musdb's order, as museval writes its score files


def museval_metrics() -> ModuleType:
    """museval's ``metrics`` module (loaded without ffmpeg: see the runner's loader); the
    tests skip where museval is not installed."""
    from cumx_cli.engine.errors import EvaluationError
    from cumx_cli.engine.evaluation.runner import museval_metrics as load

    try:
        return load()
    except EvaluationError:
        pytest.skip("museval is not installed (pip install -e '.[dev]')", allow_module_level=True)


def sources(num_sources: int, num_channels: int, length: int, seed: int = 0) -> np.ndarray:
    """Coloured-noise sources with different spectra, (source, channel, time) float64."""
    rng = np.random.default_rng(seed)
    out = np.empty((num_sources, num_channels, length))
    for j in range(num_sources):
        x = rng.standard_normal((num_channels, length + 64))
        taps = np.exp(-np.arange(64) / (2.0 + 6 * j)) * np.cos(np.arange(64) * (0.3 + 0.5 * j))
        for c in range(num_channels):
            out[j, c] = np.convolve(x[c], taps, mode="full")[64 : 64 + length] * 0.05
    return out


def estimates(refs: np.ndarray, seed: int = 1) -> np.ndarray:
    """Good estimates for even sources, poor ones (leakage and noise) for odd sources."""
    rng = np.random.default_rng(seed)
    mix = refs.sum(0)
    est = refs + 0.02 * rng.standard_normal(refs.shape) * refs.std()
    for j in range(1, refs.shape[0], 2):
        est[j] = 0.6 * refs[j] + 0.3 * mix + 0.3 * rng.standard_normal(refs[j].shape) * refs.std()
    est[:, :, 1:] += 0.2 * est[:, :, :-1]  # a short filter: spatial distortion
    return est


def write_musdb(root: Path, tracks: dict[str, float], subset: str = "test",
                rate: int = RATE) -> dict[str, dict[str, np.ndarray]]:
    """ROOT/subset/<track>/{mixture,vocals,drums,bass,other}.wav, 16-bit stereo; returns the
    stems (source -> (time, channel)) of each track, as written (quantised)."""
    written = {}
    for n, (name, seconds) in enumerate(tracks.items()):
        refs = sources(4, 2, int(seconds * rate), seed=10 + n)
        folder = root / subset / name
        folder.mkdir(parents=True, exist_ok=True)
        stems = {}
        for j, src in enumerate(SOURCES):
            data = np.round(np.clip(refs[j].T, -1, 1) * 32767) / 32768
            sf.write(folder / f"{src}.wav", data, rate, subtype="PCM_16")
            stems[src] = data
        sf.write(folder / "mixture.wav", np.clip(sum(stems.values()), -1, 1), rate,
                 subtype="PCM_16")
        written[name] = stems
    return written


def write_estimates(folder: Path, stems: dict[str, dict[str, np.ndarray]], cut: int = 0) -> None:
    """``folder/<track>/<source>.wav``: :func:`estimates` of the stems :func:`write_musdb` wrote,
    as float wavs, ``cut`` samples shorter than the references."""
    for n, (track, by_source) in enumerate(stems.items()):
        refs = np.stack([by_source[s].T for s in SOURCES]).astype(np.float64)
        est = estimates(refs, seed=n)
        for j, src in enumerate(SOURCES):
            path = folder / track / f"{src}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = est[j].T[: est.shape[-1] - cut] if cut else est[j].T
            sf.write(path, np.clip(data, -1, 1), RATE, subtype="FLOAT")


def damage_estimate(path: Path, problem: str) -> None:
    """Make the estimate file at ``path`` wrong in one way: ``missing`` (deleted), ``length``
    (half a second long), ``rate`` (at 22050 Hz) or ``channels`` (mono)."""
    if problem == "missing":
        path.unlink()
    elif problem == "length":
        sf.write(path, np.zeros((RATE // 2, 2)) + 0.1, RATE)
    elif problem == "rate":
        sf.write(path, np.zeros((RATE, 2)) + 0.1, 22050)
    elif problem == "channels":
        sf.write(path, np.zeros(int(2.2 * RATE)) + 0.1, RATE)
    else:
        raise ValueError(problem)


def karaoke_data(root: Path) -> Path:
    """cumx's small synthetic data set (2 training, 1 validation, 1 test track of 3 s) in
    ``root``, whose training tracks also hold ``accompaniment.wav`` = drums + bass + other."""
    from cumx_cli.engine.data.synth import generate_synthetic_musdb

    root = generate_synthetic_musdb(root, num_train=2, num_valid=1, num_test=1, seconds=3.0)
    for folder in (root / "train").iterdir():
        stems = [sf.read(folder / f"{s}.wav", dtype="float32")[0] for s in ("drums", "bass", "other")]
        sf.write(folder / "accompaniment.wav", sum(stems), 44100, subtype="FLOAT")
    return root
