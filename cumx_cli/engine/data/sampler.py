"""Training excerpts: random-track mixing with augmentation (spec §3.2).

For every example, each source independently picks a random track of its pool, a random start in
``[0, frames - seq]``, and reads ``seq`` samples; the enabled augmentations
(:mod:`~cumx_cli.engine.data.augment`; by default the reference recipe: a gain from U(0.25, 1.25),
then a channel swap with probability 0.5) change each stem. The mixture is the sum of the
augmented stems. There is no silence handling, as in both reference codes. With
``DataConfig.random_mix`` off, one random track and one start serve all sources of an example
(aligned stems, as openunmix's ``random_track_mix=False`` with aligned chunks).

A source's pool is every training track in the track layouts, and the files of its own folder in
the ``sources`` layout (openunmix's ``SourceFolderDataset``).

Randomness comes from a generator seeded by ``(seed, epoch, rank, index)`` alone, so an epoch's
examples do not depend on worker count, on what ran before, or on whether the run was resumed.
The numbers are drawn in a fixed order per source (track, start, then each enabled augmentation),
so with the default settings the examples are those of earlier cumx versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cumx_cli.engine.config import DataConfig
from cumx_cli.engine.data.augment import enabled
from cumx_cli.engine.data.track import Track

#: The reference recipe's gain range (``DataConfig.gain_min``, ``DataConfig.gain_max``).
GAIN_RANGE = (DataConfig.gain_min, DataConfig.gain_max)


class RandomMixDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``samples_per_track * len(tracks) // world`` random excerpts per epoch for one rank.

    Args:
        tracks: the training tracks (with every source, aligned).
        pools: the tracks each source is drawn from; None: ``tracks`` for every source.
        augment: False turns every augmentation off (``data``'s settings are then not used).
        data: the augmentation and mixing settings; None: ``DataConfig()``.

    Shapes (per item): mixture (channel, time), stems (source, channel, time)
    """

    def __init__(self, tracks: Sequence[Track], sources: tuple[str, ...], seq_samples: int,
                 samples_per_track: int, seed: int, rank: int = 0, world: int = 1,
                 augment: bool = True, data: DataConfig | None = None,
                 pools: Mapping[str, Sequence[Track]] | None = None) -> None:
        self.tracks, self.sources, self.seq = list(tracks), sources, seq_samples
        self.seed, self.rank, self.world = seed, rank, world
        self.config = data or DataConfig()
        self.augmentations = enabled(self.config) if augment else []
        self.pools = {s: list(pools[s]) if pools is not None else self.tracks for s in sources}
        self.length = samples_per_track * len(self.tracks) // world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, index])
        aligned = None if self.config.random_mix else self._pick(self.tracks, rng)
        stems = []
        for source in self.sources:
            track, start = aligned or self._pick(self.pools[source], rng)
            audio = track.read(source, start, min(self.seq, track.frames - start))
            if audio.shape[-1] < self.seq:  # a track shorter than one excerpt: pad with silence
                audio = torch.nn.functional.pad(audio, (0, self.seq - audio.shape[-1]))
            for augmentation in self.augmentations:
                audio = augmentation(audio, rng, self.config)
            stems.append(audio)
        stacked = torch.stack(stems)
        return stacked.sum(dim=0), stacked

    def _pick(self, pool: Sequence[Track], rng: np.random.Generator) -> tuple[Track, int]:
        """A random track of ``pool`` and a random excerpt start in it."""
        track = pool[int(rng.integers(len(pool)))]
        return track, int(rng.integers(0, max(1, track.frames - self.seq + 1)))
