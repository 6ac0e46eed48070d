"""Dimension names, canonical tensor layouts and units used across the engine.

Dimensions:
    batch:   tracks or chunks stacked together
    source:  separated sources, in ``ModelConfig.sources`` order
    channel: audio channels (1 or 2)
    time:    samples
    freq:    STFT bins, ``n_fft // 2 + 1`` (``max_bin`` inside the network)
    frame:   STFT frames
    hidden:  network features

Canonical layouts:
    waveform                  (batch, channel, time)
    separated waveforms       (batch, source, channel, time)
    complex STFT, magnitudes  (batch, channel, freq, frame)
    per-source spectrograms   (batch, source, channel, freq, frame)

Units: sample rates in Hz (int), durations in seconds (float), offsets in samples (int), audio
float32 nominally in [-1, 1], STFT complex64 (complex128 where asked for).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cumx_cli.engine.errors import ShapeError


def check_shape(tensor: torch.Tensor, layout: Sequence[str], **sizes: int) -> None:
    """Raise :class:`ShapeError` unless ``tensor`` has ``len(layout)`` dims with the given sizes.

    Args:
        tensor: the tensor to check.
        layout: the dimension names, e.g. ``("batch", "channel", "time")``.
        **sizes: required sizes for some of the named dimensions.
    """
    if tensor.dim() != len(layout):
        raise ShapeError(
            f"expected a {len(layout)}-d tensor laid out ({', '.join(layout)}), "
            f"got shape {tuple(tensor.shape)}"
        )
    for name, size in sizes.items():
        got = tensor.shape[list(layout).index(name)]
        if got != size:
            raise ShapeError(
                f"expected {name}={size} in layout ({', '.join(layout)}), "
                f"got shape {tuple(tensor.shape)}"
            )
