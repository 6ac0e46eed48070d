"""A training track as the sampler, the statistics and validation read it: each source (and the
mixture) is the sum of zero or more stem files, read excerpt by excerpt.

One class serves every layout (:mod:`~cumx_cli.engine.data.layouts`): a MUSDB18-HQ track folder
(one file per source), a derived source (``accompaniment`` = the sum of three stems), a stem
missing and read as silence (no file), a stream of a MUSDB18 ``.stem.mp4``, one file of a
``sources`` folder, or a validation mix of several such files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cumx_cli.engine.audio.io import read_excerpt
from cumx_cli.engine.errors import AudioIOError, DatasetError

#: The name under which a track holds its mixture.
MIXTURE = "mixture"


@dataclass(frozen=True)
class StemFile:
    """One file (or one audio stream of a file) holding a stem.

    ``rounded``: the samples are rounded to 16 bits and clipped at full scale, as musdb decodes
    a MUSDB18 ``.stem.mp4`` (``stempeg``'s ``s16le``), so that training data equal musdb's.
    """

    path: Path
    stream: int = 0
    rounded: bool = False

    def describe(self) -> str:
        """The file, and its stream where it is not the first, for messages."""
        return str(self.path) if not self.stream else f"{self.path} (stream {self.stream})"

    def read(self, start: int, frames: int) -> torch.Tensor:
        """``frames`` samples from ``start``, zero-padded past the end of the file.

        Raises:
            AudioIOError: as ``audio.io.read_excerpt``.

        Shapes:
            returns: (channel, frames) float32
        """
        data = read_excerpt(self.path, start, frames, stream=self.stream)
        return as_musdb_samples(data) if self.rounded else data


def as_musdb_samples(samples: torch.Tensor) -> torch.Tensor:
    """Decoded MUSDB18 samples as musdb gives them (a new tensor): rounded to 16 bits and
    clipped at full scale (``s16le``, what ffmpeg's float to int16 conversion does)."""
    return samples.mul(32768.0).round_().clamp_(-32768.0, 32767.0).div_(32768.0)


@dataclass
class Track:
    """One training track: its name, sample rate, length, and the stems of each source.

    ``parts`` maps each source, and :data:`MIXTURE`, to the stem files summed to make it (an
    empty tuple is silence). ``num_channels`` is the channel count every read returns: a mono
    file is read into every channel (as demucs' ``convert_audio_channels`` does); the layouts
    refuse files of other channel counts before any work.
    """

    name: str
    rate: int
    frames: int
    parts: dict[str, tuple[StemFile, ...]]
    num_channels: int = 2

    @property
    def files(self) -> dict[str, Path]:
        """The first file of each source and of the mixture (where there is one)."""
        return {name: parts[0].path for name, parts in self.parts.items() if parts}

    def stamp(self, source: str) -> list[tuple[str, int, int]]:
        """Path, stream and modification time (ns) of each file of ``source``: what a cache of
        values computed from them is keyed on."""
        return [(str(p.path), p.stream, os.stat(p.path).st_mtime_ns) for p in self.parts[source]]

    def read(self, source: str, start: int = 0, frames: int | None = None) -> torch.Tensor:
        """Samples of ``source`` (or ``mixture``) from ``start``: the sum of its files, each
        zero-padded past its end (a stem shorter than the track is padded with silence).

        Raises:
            DatasetError: a file cannot be decoded, or the samples read hold a NaN or an
                infinity (checked on every read rather than by a scan of the whole dataset at
                start-up, so a bad sample stops training before it reaches the model).

        Shapes:
            returns: (channel, frames) float32, channel = ``num_channels``
        """
        frames = self.frames - start if frames is None else frames
        total = torch.zeros(self.num_channels, frames)
        for part in self.parts[source]:
            try:
                data = part.read(start, frames)
            except AudioIOError as exc:
                raise DatasetError(str(exc)) from exc
            finite = torch.isfinite(data).all(dim=0)
            if not bool(finite.all()):
                first = start + int(torch.argmin(finite.to(torch.uint8)))
                raise DatasetError(f"{part.describe()}: contains NaN or infinite samples "
                                   f"(first at {first / self.rate:.3f} s)")
            total += data  # a mono file broadcasts over the channels
        return total
