"""A small synthetic dataset in MUSDB18-HQ layout, for trying training without MUSDB.

Four stems with distinct character, so a separator has something to learn:

* ``bass``: low sawtooth-like notes (40-110 Hz) with a few harmonics and note envelopes;
* ``drums``: kicks (pitch-dropping sine bursts), snares and hats (filtered noise bursts);
* ``other``: sustained harmonic chords (200-1000 Hz), slowly swelling;
* ``vocals``: a voice-like tone (120-400 Hz) with vibrato, formant-like harmonics and syllables.

The mixture is the sum of the stems. ``split.json`` names the validation tracks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cumx_cli.engine.audio.io import write_audio

#: The order in which each track's stems draw from the generator (not a source order of cumx:
#: that is ``config.MUSDB_SOURCES``); changing it would change every generated file.
_DRAW_ORDER = ("bass", "drums", "other", "vocals")


def _bass(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    note = int(rate * rng.uniform(0.25, 0.5))
    for start in range(0, n, note):
        f0 = rng.uniform(40, 110)
        t = np.arange(min(note, n - start)) / rate
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        out[start : start + t.size] = tone * np.exp(-2.0 * t)
    return 0.3 * out


def _drums(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    beat = int(rate * rng.uniform(0.2, 0.3))
    for i, start in enumerate(range(0, n, beat)):
        length = min(int(0.15 * rate), n - start)
        t = np.arange(length) / rate
        if i % 4 == 0:  # kick
            hit = np.sin(2 * np.pi * (120 * t - 200 * t**2)) * np.exp(-25 * t)
        elif i % 4 == 2:  # snare
            hit = rng.standard_normal(length) * np.exp(-30 * t)
        else:  # hat
            hit = np.diff(rng.standard_normal(length + 1)) * 0.3 * np.exp(-60 * t)
        out[start : start + length] += hit
    return 0.4 * out


def _other(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    chord = rng.uniform(200, 500) * np.array([1.0, 1.25, 1.5, 2.0])
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t)
    return 0.08 * swell * sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in chord)


def _vocals(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    pitch = rng.uniform(120, 400) * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) * np.exp(-((k * pitch.mean() - 700) / 900) ** 2)
                for k in range(1, 12))
    syllables = (np.sin(2 * np.pi * rng.uniform(2, 4) * t) > -0.3).astype(float)
    return 0.15 * voice * syllables


_MAKERS = {"bass": _bass, "drums": _drums, "other": _other, "vocals": _vocals}


def generate_synthetic_musdb(root: Path, num_train: int = 8, num_valid: int = 2, num_test: int = 2,
                             seconds: float = 12.0, rate: int = 44100, seed: int = 0) -> Path:
    """Write ``root/{train,test}/<track>/{mixture,bass,drums,other,vocals}.wav`` and split.json."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    names = {"train": [f"synth-train-{i:03d}" for i in range(num_train + num_valid)],
             "test": [f"synth-test-{i:03d}" for i in range(num_test)]}
    for subset, tracks in names.items():
        for name in tracks:
            folder = root / subset / name
            folder.mkdir(parents=True, exist_ok=True)
            stems = {}
            for source in _DRAW_ORDER:
                left = _MAKERS[source](n, rate, rng)
                right = 0.8 * left + 0.2 * _MAKERS[source](n, rate, rng)
                stems[source] = np.stack([left, right], axis=1).astype(np.float32)
                write_audio(folder / f"{source}.wav", torch.from_numpy(stems[source].T), rate)
            mixture = sum(stems.values())
            write_audio(folder / "mixture.wav", torch.from_numpy(np.asarray(mixture).T), rate)
    split = {"valid": names["train"][num_train:]}
    (root / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    return root
