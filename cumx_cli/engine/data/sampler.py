"""Training excerpts: random-track mixing with gain and channel-swap augmentation (spec §3.2).

For every example, each source independently picks a random training track, a random start in
``[0, frames - seq]``, reads ``seq`` samples, scales them by a gain drawn from U(0.25, 1.25) and
swaps the channels with probability 0.5. The mixture is the sum of the augmented stems. There is
no silence handling, as in both reference codes.

Randomness comes from a generator seeded by ``(seed, epoch, rank, index)`` alone, so an epoch's
examples do not depend on worker count, on what ran before, or on whether the run was resumed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cumx_cli.engine.data.musdb import Track

GAIN_RANGE = (0.25, 1.25)


class RandomMixDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``samples_per_track * len(tracks) // world`` random excerpts per epoch for one rank.

    Shapes (per item): mixture (channel, time), stems (source, channel, time)
    """

    def __init__(self, tracks: list[Track], sources: tuple[str, ...], seq_samples: int,
                 samples_per_track: int, seed: int, rank: int = 0, world: int = 1,
                 augment: bool = True) -> None:
        self.tracks, self.sources, self.seq = tracks, sources, seq_samples
        self.seed, self.rank, self.world, self.augment = seed, rank, world, augment
        self.length = samples_per_track * len(tracks) // world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, index])
        stems = []
        for source in self.sources:
            track = self.tracks[int(rng.integers(len(self.tracks)))]
            start = int(rng.integers(0, max(1, track.frames - self.seq + 1)))
            audio = track.read(source, start, min(self.seq, track.frames - start))
            if audio.shape[-1] < self.seq:  # a track shorter than one excerpt: pad with silence
                audio = torch.nn.functional.pad(audio, (0, self.seq - audio.shape[-1]))
            if self.augment:
                audio = audio * float(rng.uniform(*GAIN_RANGE))
                if audio.shape[0] == 2 and rng.random() < 0.5:
                    audio = audio.flip(0)
            stems.append(audio)
        stacked = torch.stack(stems)
        return stacked.sum(dim=0), stacked
