"""Scratch storage: a track's finished stem samples, held until the track's last chunk is in.

Stems cannot be encoded as they come: the ``rescale`` clip policy needs the peak over the whole
track first. Tracks whose stems fit in the run's :class:`ScratchBudget` (shared by all open
tracks; a typical song fits the default) keep them in memory (:class:`MemoryScratch`); longer
ones spill to hidden raw float32 files beside the outputs (:class:`FileScratch`), which costs a
write and a read of every sample but keeps memory bounded whatever the length.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import torch

from cumx_cli.engine.config import DEFAULT_SCRATCH_MIB
from cumx_cli.engine.files import hidden_path

#: Default budget, in bytes, for holding separated stems in memory until a track is done (all
#: open tracks together).
MEMORY_SCRATCH_BYTES = DEFAULT_SCRATCH_MIB * 2**20
_FLOAT32_BYTES = 4


class Scratch(Protocol):
    """Finished samples of a track's written sources, appended in time order, read back per
    source in blocks."""

    def open(self) -> None:
        """Make the storage ready (after the output folders exist)."""

    def append(self, stems: torch.Tensor) -> None:
        """Shapes: stems (source, channel, time), the next samples of every written source."""

    def close(self) -> None:
        """No more appends follow."""

    def blocks(self, index: int, frames: int) -> Iterator[tuple[torch.Tensor, bool]]:
        """Source ``index`` in blocks of up to ``frames`` samples, (time, channel) each, with an
        "is it the last block" flag; at least one block, possibly empty."""

    def release(self, index: int) -> None:
        """Source ``index`` has been encoded; its storage may go."""

    def discard(self) -> None:
        """Drop everything (done, or the track failed); safe to call more than once."""


class ScratchBudget:
    """Bytes of stems that the open tracks of a run may still hold in memory."""

    def __init__(self, available: int) -> None:
        self.available = available

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes if that many are left."""
        if size > self.available:
            return False
        self.available -= size
        return True

    def give(self, size: int) -> None:
        """Return ``size`` reserved bytes."""
        self.available += size


def open_scratch(budget: ScratchBudget, outputs: dict[str, Path], length: int,
                 channels: int) -> Scratch:
    """A memory scratch for ``length`` samples of every output if ``budget`` allows (it holds
    its share until discarded), else a file scratch beside the outputs. Not yet opened."""
    size = len(outputs) * length * channels * _FLOAT32_BYTES
    if budget.take(size):
        return MemoryScratch(len(outputs), length, channels, budget)
    return FileScratch(outputs, channels)


class MemoryScratch:
    """A track's final stem samples, held in memory: (source, time, channel) float32.

    ``budget``, when given, got this scratch's bytes reserved and gets them back on discard.
    """

    def __init__(self, stems: int, length: int, channels: int,
                 budget: ScratchBudget | None = None) -> None:
        self.data: torch.Tensor | None = torch.empty(stems, length, channels)
        self.filled = 0
        self._budget = budget

    def open(self) -> None:
        pass

    def append(self, stems: torch.Tensor) -> None:
        """Shapes: stems (source, channel, time)."""
        assert self.data is not None
        n = stems.shape[-1]
        self.data[:, self.filled : self.filled + n].copy_(stems.transpose(1, 2))
        self.filled += n

    def close(self) -> None:
        pass

    def blocks(self, index: int, frames: int) -> Iterator[tuple[torch.Tensor, bool]]:
        """Source ``index`` in blocks of (time, channel), each with "is it the last" flag."""
        assert self.data is not None
        for start in range(0, max(self.filled, 1), frames):
            yield self.data[index, start : start + frames], start + frames >= self.filled

    def release(self, index: int) -> None:
        pass

    def discard(self) -> None:
        if self.data is not None and self._budget is not None:
            self._budget.give(self.data.numel() * _FLOAT32_BYTES)
        self.data = None


class FileScratch:
    """A track's final stem samples in hidden raw float32 files beside the outputs, interleaved
    by frame (``.<name>.<host>.<pid>.raw``); deleted once encoded, or on failure.

    The host and process id in the name keep a killed run's leftovers apart from a rerun's
    files, also when several machines write into one shared folder; a later run removes the
    leftovers (:func:`cumx_cli.engine.files.remove_stale_scratch`).
    """

    def __init__(self, outputs: dict[str, Path], channels: int) -> None:
        self.paths = [hidden_path(path, "raw") for path in outputs.values()]
        self.channels = channels
        self.files: list[BinaryIO] = []

    def open(self) -> None:
        for path in self.paths:
            self.files.append(path.open("wb"))

    def append(self, stems: torch.Tensor) -> None:
        """Shapes: stems (source, channel, time)."""
        for file, stem in zip(self.files, stems, strict=True):
            stem.T.contiguous().numpy().tofile(file)

    def close(self) -> None:
        for f in self.files:
            f.close()

    def blocks(self, index: int, frames: int) -> Iterator[tuple[torch.Tensor, bool]]:
        """Source ``index`` in blocks of (time, channel), each with "is it the last" flag."""
        with self.paths[index].open("rb") as f:
            while True:
                data = np.fromfile(f, dtype=np.float32, count=frames * self.channels)
                last = data.size < frames * self.channels
                yield torch.from_numpy(data).view(-1, self.channels), last
                if last:
                    break

    def release(self, index: int) -> None:
        self.paths[index].unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        for path in self.paths:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
