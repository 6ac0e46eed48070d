"""Augmentations of one training stem, registered by name in :data:`AUGMENTATIONS`.

Each takes a stem excerpt, the example's generator and the :class:`~cumx_cli.engine.config.DataConfig`,
and returns the augmented excerpt (a new tensor; the input is not changed). The sampler applies
the enabled ones (:func:`enabled`) in the order of :data:`AUGMENTATIONS` to every source of every
example, before the sources are summed into the mixture.

* ``gain``: times a gain from U(``gain_min``, ``gain_max``): the reference recipe's U(0.25, 1.25)
  (openunmix's ``_augment_gain``, Sony's ``augment_gain``).
* ``channel_swap``: left and right swapped with probability 0.5, stereo only (openunmix's
  ``_augment_channelswap``).
* ``polarity``: the sign flipped with probability 0.5 (demucs' ``FlipSign``, per source): a
  new mixture for every sign pattern, the same magnitudes per source; off by default, as in
  the X-UMX recipe. It helps small data sets most, where the same stems meet again and again.

A pitch or tempo change is not offered: neither torch nor the project's decoder has one that
keeps the quality of the stems (a plain resampling changes both together and colours the
spectrum), and the well-kept libraries that do it (torchaudio, soundstretch, rubberband) are
new heavy dependencies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cumx_cli.engine.config import DataConfig

#: An augmentation: (stem (channel, time), generator, config) -> augmented stem.
Augmentation = Callable[[torch.Tensor, np.random.Generator, DataConfig], torch.Tensor]


def gain(audio: torch.Tensor, rng: np.random.Generator, config: DataConfig) -> torch.Tensor:
    """``audio`` times a gain drawn from U(``gain_min``, ``gain_max``).

    Shapes:
        audio: (channel, time); returns: (channel, time)
    """
    return audio * float(rng.uniform(config.gain_min, config.gain_max))


def channel_swap(audio: torch.Tensor, rng: np.random.Generator,
                 config: DataConfig) -> torch.Tensor:
    """Left and right swapped with probability 0.5 (a stereo stem; others as they are, and no
    number is drawn for them).

    Shapes:
        audio: (channel, time); returns: (channel, time)
    """
    if audio.shape[0] == 2 and rng.random() < 0.5:
        return audio.flip(0)
    return audio


def polarity(audio: torch.Tensor, rng: np.random.Generator, config: DataConfig) -> torch.Tensor:
    """``audio`` with its sign flipped with probability 0.5.

    Shapes:
        audio: (channel, time); returns: (channel, time)
    """
    return -audio if rng.random() < 0.5 else audio


#: Every augmentation, in the order they are applied.
AUGMENTATIONS: dict[str, Augmentation] = {
    "gain": gain, "channel_swap": channel_swap, "polarity": polarity,
}


def enabled(config: DataConfig) -> list[Augmentation]:
    """The augmentations ``config`` turns on, in order (a gain of exactly 1 is off)."""
    on = {"gain": (config.gain_min, config.gain_max) != (1.0, 1.0),
          "channel_swap": config.channel_swap, "polarity": config.polarity}
    return [AUGMENTATIONS[name] for name in AUGMENTATIONS if on[name]]
