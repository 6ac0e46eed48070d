"""Initial input normalisation: per-bin mean and std of the training magnitudes (spec §3.3).

As in Sony's code: the real mixture of every training track, whole; STFT frames of the
mono-downmixed magnitude (the mean of the two channels' magnitudes); the population std, floored
at 1e-4 times its maximum. The model stores minus the mean and one over the std, cropped to
``max_bin``. Results are cached per dataset (track names, lengths and modification times).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from cumx_cli.engine.data.track import MIXTURE, Track
from cumx_cli.engine.dsp.stft import STFT
from cumx_cli.engine.files import replacing


def _cache_key(tracks: list[Track], n_fft: int, hop: int) -> str:
    parts = []
    for t in tracks:  # every file of the mixture (a sum of stems where a track has no mixture)
        parts.append([t.name, t.frames, t.rate, t.stamp(MIXTURE)])
    blob = json.dumps([parts, n_fft, hop, 2]).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def input_statistics(tracks: list[Track], n_fft: int, hop: int, *, cache_dir: Path | None = None,
                     progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and floored std of the mono-downmixed mixture magnitudes.

    Args:
        tracks: the training tracks.
        n_fft, hop: the model's STFT (``ModelConfig.n_fft``, ``ModelConfig.hop_length``).
        cache_dir: the cache root; results are kept in ``<cache_dir>/stats``. None: no cache.
        progress: called with (tracks done, tracks) after each track.

    Shapes:
        returns: mean (freq,), std (freq,), float32, freq = n_fft // 2 + 1
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / "stats" / f"{_cache_key(tracks, n_fft, hop)}.pt"
        if cache.is_file():
            try:
                data = torch.load(cache, weights_only=True)
                return data["mean"], data["std"]
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                cache.unlink(missing_ok=True)
    stft = STFT(n_fft, hop)
    total = torch.zeros(n_fft // 2 + 1, dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for i, track in enumerate(tracks):
        audio = track.read("mixture")
        if audio.shape[-1] < stft.min_length():
            audio = torch.nn.functional.pad(audio, (0, stft.min_length() - audio.shape[-1]))
        with torch.no_grad():
            mag = stft(audio).abs().mean(dim=0).double()  # (freq, frame): mono downmix
        total += mag.sum(dim=1)
        squares += mag.pow(2).sum(dim=1)
        count += mag.shape[1]
        if progress is not None:
            progress(i + 1, len(tracks))
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(0).sqrt()
    std = torch.maximum(std, 1e-4 * std.max())
    mean, std = mean.float(), std.float()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with replacing(cache) as tmp:
            torch.save({"mean": mean, "std": std}, tmp)
    return mean, std
