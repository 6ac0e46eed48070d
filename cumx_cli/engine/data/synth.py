"""A small synthetic dataset in MUSDB18-HQ layout, for trying training without MUSDB.

Four stems with distinct character, so a separator has something to learn:

* ``bass``: low sawtooth-like notes (40-110 Hz) with a few harmonics and note envelopes;
* ``drums``: kicks (pitch-dropping sine bursts), snares and hats (filtered noise bursts);
* ``other``: sustained harmonic chords (200-1000 Hz), slowly swelling;
* ``vocals``: a voice-like tone (120-400 Hz) with vibrato, formant-like harmonics and syllables.

The mixture is the sum of the stems. ``split.json`` names the validation tracks.

``style="b"`` makes a *different* data set with the same four stem names (for fine-tuning
demos, ``benchmarks/finetune.py``): a square-wave bass an octave higher (80-220 Hz, odd
harmonics, plucked), a faster drum kit with a higher kick and bright noise hats on every other
beat, plucked arpeggios (300-1500 Hz) instead of sustained chords, and a higher, brighter voice
(220-600 Hz, formants near 1.2 kHz, faster syllables).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

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


def _bass_b(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    note = int(rate * rng.uniform(0.12, 0.25))
    for start in range(0, n, note):
        f0 = rng.uniform(80, 220)
        t = np.arange(min(note, n - start)) / rate
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 3, 5, 7))
        out[start : start + t.size] = tone * np.exp(-8.0 * t)
    return 0.25 * out


def _drums_b(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    beat = int(rate * rng.uniform(0.11, 0.16))
    for i, start in enumerate(range(0, n, beat)):
        length = min(int(0.08 * rate), n - start)
        t = np.arange(length) / rate
        if i % 8 in (0, 5):  # kick, higher and shorter
            hit = np.sin(2 * np.pi * (220 * t - 600 * t**2)) * np.exp(-45 * t)
        elif i % 8 == 4:  # clap: three noise bursts
            hit = 0.5 * rng.standard_normal(length) * (np.exp(-80 * t) + np.exp(-80 * np.abs(t - 0.01)))
        elif i % 2:  # bright hat
            hit = np.diff(np.diff(rng.standard_normal(length + 2))) * 0.2 * np.exp(-90 * t)
        else:
            continue
        out[start : start + length] += hit
    return 0.35 * out


def _other_b(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    root = rng.uniform(300, 600)
    step = int(rate * rng.uniform(0.1, 0.2))
    ratios = (1.0, 1.2, 1.5, 2.0, 2.4)
    for i, start in enumerate(range(0, n, step)):
        t = np.arange(min(2 * step, n - start)) / rate
        f = root * ratios[i % len(ratios)]
        out[start : start + t.size] += (np.sin(2 * np.pi * f * t)
                                        + 0.3 * np.sin(4 * np.pi * f * t)) * np.exp(-12 * t)
    return 0.12 * out


def _vocals_b(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    pitch = rng.uniform(220, 600) * (1 + 0.03 * np.sin(2 * np.pi * 6.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) * np.exp(-((k * pitch.mean() - 1200) / 700) ** 2)
                for k in range(1, 10))
    syllables = (np.sin(2 * np.pi * rng.uniform(4, 7) * t) > 0.0).astype(float)
    return 0.15 * voice * syllables


_MAKERS = {"bass": _bass, "drums": _drums, "other": _other, "vocals": _vocals}
_MAKERS_B = {"bass": _bass_b, "drums": _drums_b, "other": _other_b, "vocals": _vocals_b}


def generate_synthetic_musdb(root: Path, num_train: int = 8, num_valid: int = 2, num_test: int = 2,
                             seconds: float = 12.0, rate: int = 44100, seed: int = 0,
                             style: Literal["a", "b"] = "a") -> Path:
    """Write ``root/{train,test}/<track>/{mixture,bass,drums,other,vocals}.wav`` and split.json.

    ``style`` picks the stems' character (the module docstring); the default's files do not
    change with this option's existence.
    """
    root = Path(root)
    makers = {"a": _MAKERS, "b": _MAKERS_B}[style]
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
                left = makers[source](n, rate, rng)
                right = 0.8 * left + 0.2 * makers[source](n, rate, rng)
                stems[source] = np.stack([left, right], axis=1).astype(np.float32)
                write_audio(folder / f"{source}.wav", torch.from_numpy(stems[source].T), rate)
            mixture = sum(stems.values())
            write_audio(folder / "mixture.wav", torch.from_numpy(np.asarray(mixture).T), rate)
    split = {"valid": names["train"][num_train:]}
    (root / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    return root
