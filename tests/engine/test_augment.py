"""Augmentations and the random-mix sampler: shape, range, and determinism under the seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cumx_cli.engine.config import DataConfig
from cumx_cli.engine.data import augment
from cumx_cli.engine.data.layouts import load_training_data
from cumx_cli.engine.data.sampler import RandomMixDataset
from cumx_cli.engine.data.sources import parse_sources
from cumx_cli.engine.data.track import Track
from tests.engine.test_layouts import sources_root, track_folder

SEQ = 1000


def excerpt(seed: int = 0, channels: int = 2) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((channels, 64))).float()


def test_each_augmentation_against_its_formula() -> None:
    audio, config = excerpt(), DataConfig(gain_min=0.5, gain_max=0.75)
    gain = np.random.default_rng(7).uniform(0.5, 0.75)
    out = augment.gain(audio, np.random.default_rng(7), config)
    assert torch.allclose(out, audio * gain) and 0.5 <= gain <= 0.75
    swap = np.random.default_rng(3).random() < 0.5
    out = augment.channel_swap(audio, np.random.default_rng(3), config)
    assert torch.equal(out, audio.flip(0) if swap else audio)
    mono, rng = excerpt(channels=1), np.random.default_rng(3)
    assert augment.channel_swap(mono, rng, config) is mono
    assert rng.random() == np.random.default_rng(3).random()  # no number drawn for mono
    flips = [bool(np.random.default_rng(s).random() < 0.5) for s in range(8)]
    outs = [augment.polarity(audio, np.random.default_rng(s), config) for s in range(8)]
    assert all(torch.equal(o, -audio if f else audio) for o, f in zip(outs, flips, strict=True))
    assert any(flips) and not all(flips)
    assert torch.equal(audio, excerpt())  # the input is never changed


def test_which_augmentations_are_on() -> None:
    names = {f: n for n, f in augment.AUGMENTATIONS.items()}
    assert [names[f] for f in augment.enabled(DataConfig())] == ["gain", "channel_swap"]
    off = DataConfig(gain_min=1.0, gain_max=1.0, channel_swap=False, polarity=True)
    assert [names[f] for f in augment.enabled(off)] == ["polarity"]


@pytest.fixture
def tracks(tmp_path: Path) -> list[Track]:
    for i in range(3):
        track_folder(tmp_path / "train" / f"t{i}", {"vocals": "wav", "drums": "wav"}, seed=i,
                     mixture=True)
    track_folder(tmp_path / "valid" / "v", {"vocals": "wav", "drums": "wav"})
    return load_training_data(tmp_path, parse_sources("vocals,drums"), DataConfig()).train


def reference(tracks: list[Track], seed: int, epoch: int, index: int) -> torch.Tensor:
    """The reference recipe written out: per source a random track, start, gain, swap."""
    rng = np.random.default_rng([seed, epoch, 0, index])
    stems = []
    for source in ("vocals", "drums"):
        track = tracks[int(rng.integers(len(tracks)))]
        start = int(rng.integers(0, track.frames - SEQ + 1))
        audio = track.read(source, start, SEQ) * float(rng.uniform(0.25, 1.25))
        stems.append(audio.flip(0) if rng.random() < 0.5 else audio)
    return torch.stack(stems)


def test_the_default_examples_are_the_reference_recipe(tracks: list[Track]) -> None:
    ds = RandomMixDataset(tracks, ("vocals", "drums"), SEQ, 4, seed=5)
    ds.set_epoch(2)
    for index in range(4):
        mixture, stems = ds[index]
        assert stems.shape == (2, 2, SEQ) and mixture.shape == (2, SEQ)
        assert torch.allclose(stems, reference(tracks, 5, 2, index))
        assert torch.allclose(mixture, stems.sum(0))
    again = RandomMixDataset(tracks, ("vocals", "drums"), SEQ, 4, seed=5)
    again.set_epoch(2)
    assert torch.equal(again[3][1], ds[3][1])
    other = RandomMixDataset(tracks, ("vocals", "drums"), SEQ, 4, seed=6)
    other.set_epoch(2)
    assert not torch.equal(other[3][1], ds[3][1])


def test_polarity_gain_range_and_no_random_mix(tracks: list[Track]) -> None:
    config = DataConfig(gain_min=0.5, gain_max=0.5, channel_swap=False, polarity=True,
                        random_mix=False)
    ds = RandomMixDataset(tracks, ("vocals", "drums"), SEQ, 8, seed=1, data=config)
    signs = []
    for index in range(8):
        _, stems = ds[index]
        rng = np.random.default_rng([1, 0, 0, index])
        track = tracks[int(rng.integers(len(tracks)))]  # one track and start for both sources
        start = int(rng.integers(0, track.frames - SEQ + 1))
        for j, source in enumerate(("vocals", "drums")):
            plain = 0.5 * track.read(source, start, SEQ)
            assert torch.equal(stems[j], plain) or torch.equal(stems[j], -plain)
            signs.append(torch.equal(stems[j], -plain))
    assert any(signs) and not all(signs)
    plain_ds = RandomMixDataset(tracks, ("vocals", "drums"), SEQ, 8, seed=1, augment=False)
    peak = max(float(t.read(s).abs().max()) for t in tracks for s in ("vocals", "drums"))
    assert float(plain_ds[0][1].abs().max()) <= peak


def test_the_sources_layout_draws_each_source_from_its_own_files(tmp_path: Path) -> None:
    sources_root(tmp_path, {"vocals": 3, "drums": 2})
    sources_root(tmp_path, {"vocals": 1, "drums": 1}, subset="valid")
    data = load_training_data(tmp_path, parse_sources("vocals,drums"), DataConfig())
    ds = RandomMixDataset(data.train, ("vocals", "drums"), SEQ, 2, seed=0,
                          data=DataConfig(gain_min=1.0, gain_max=1.0, channel_swap=False),
                          pools=data.pools)
    assert len(ds) == 2 * 3
    for index in range(len(ds)):
        _, stems = ds[index]
        rng = np.random.default_rng([0, 0, 0, index])
        for j, source in enumerate(("vocals", "drums")):
            pool = data.pools[source]
            track = pool[int(rng.integers(len(pool)))]
            start = int(rng.integers(0, max(1, track.frames - SEQ + 1)))
            assert torch.equal(stems[j], track.read(source, start, SEQ))
