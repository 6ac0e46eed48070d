"""Chunk planning and weighted overlap-add, as pure index arithmetic (no model).

A track of ``length`` samples is cut into the fewest chunks of at most ``chunk`` samples that
overlap by at least ``overlap`` samples; all chunks of a track get the same size and are spread
evenly from its first to its last sample. So chunks of a track can share a batch, no chunk ever
contains padding that the BLSTM would see, and little audio is processed twice (a 180 s track
with 30 s chunks and 1 s overlap is 7 chunks of 26.6 s: 186 s of work). A track no longer than
one chunk is one chunk of its own length: it is processed whole, exactly as a whole-track
separator would.

Chunks are joined with linear cross-fades over each actual overlap, normalised by the running sum
of weights, so an identity model reconstructs the input exactly whatever the lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkPlan:
    """Where the chunks of one track start; all have length ``size``."""

    length: int
    size: int
    starts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.starts)

    def final_until(self, index: int) -> int:
        """Samples before this index are final once chunk ``index`` has been added."""
        return self.starts[index + 1] if index + 1 < len(self.starts) else self.length

    def weights(self, index: int) -> torch.Tensor:
        """Cross-fade weights of chunk ``index``: ramps over the actual overlaps, else ones.

        Shapes:
            returns: (time,) with time == size, all > 0
        """
        w = torch.ones(self.size)
        start = self.starts[index]
        if index > 0:
            ramp = self.starts[index - 1] + self.size - start
            if ramp > 0:
                w[:ramp] = (torch.arange(ramp) + 0.5) / ramp
        if index + 1 < len(self.starts):
            ramp = start + self.size - self.starts[index + 1]
            if ramp > 0:
                w[self.size - ramp :] = torch.minimum(
                    w[self.size - ramp :], 1.0 - (torch.arange(ramp) + 0.5) / ramp
                )
        return w


def plan_chunks(length: int, chunk: int, overlap: int) -> ChunkPlan:
    """Plan the chunks of a track.

    Args:
        length: samples in the track (> 0).
        chunk: samples per chunk (> overlap).
        overlap: minimum overlap between neighbouring chunks, in samples (>= 0).
    """
    if length <= chunk:
        return ChunkPlan(length=length, size=length, starts=(0,))
    count = -(-(length - overlap) // (chunk - overlap))  # ceil: the fewest chunks that fit
    size = -(-(length + (count - 1) * overlap) // count)  # <= chunk, by the choice of count
    starts = tuple(round(k * (length - size) / (count - 1)) for k in range(count))
    return ChunkPlan(length=length, size=size, starts=starts)


class OverlapAdd:
    """Streams the weighted overlap-add of one track's chunk outputs.

    Add chunk outputs in order with :meth:`add`; each call returns the samples that have become
    final (normalised by the weight sum). The accumulator is allocated once, two chunks long,
    and reused: long inputs neither grow memory nor fragment the heap.
    """

    def __init__(self, plan: ChunkPlan) -> None:
        self.plan = plan
        self.next_index = 0
        self.emitted = 0  # absolute index of acc[..., 0]
        self.filled = 0  # samples of acc in use
        # Whether at most two chunks share any sample (chunk k + 2 starts after chunk k ends):
        # so it is with the default overlap, and then only the tail that the next chunk overlaps
        # is carried over (_add_pairwise); otherwise the accumulator holds two chunks.
        starts = plan.starts
        self.pairwise = all(c >= a + plan.size for a, c in zip(starts, starts[2:], strict=False))
        self.acc: torch.Tensor | None = None
        self.wsum = torch.zeros(2 * plan.size if len(plan) > 1 and not self.pairwise else 0)
        self._carry: tuple[torch.Tensor, torch.Tensor] | None = None  # weighted tail, weights

    def add(self, output: torch.Tensor) -> torch.Tensor:
        """Add the next chunk's output and return the newly final samples.

        Shapes:
            output:  (..., time) with time == plan.size
            returns: (..., n) for the n samples that became final
        """
        index = self.next_index
        size = self.plan.size
        if len(self.plan) == 1:  # a track of one chunk: its weights are ones, nothing to add
            self.next_index += 1
            self.emitted = size
            return output
        if self.pairwise:
            return self._add_pairwise(output)
        if self.acc is None:
            self.acc = output.new_zeros(*output.shape[:-1], 2 * size)
        lo = self.plan.starts[index] - self.emitted
        w = self.plan.weights(index).to(output.dtype)
        self.acc[..., self.filled : lo + size] = 0.0
        self.wsum[self.filled : lo + size] = 0.0
        self.filled = max(self.filled, lo + size)
        self.acc[..., lo : lo + size].addcmul_(output, w)
        self.wsum[lo : lo + size] += w
        self.next_index += 1
        cut = self.plan.final_until(index) - self.emitted
        done = self.acc[..., :cut] / self.wsum[:cut]
        rest = self.filled - cut  # carried over: at most one chunk, moved to the front
        self.acc[..., :rest] = self.acc[..., cut : self.filled].clone()
        self.wsum[:rest] = self.wsum[cut : self.filled].clone()
        self.filled = rest
        self.emitted += cut
        return done

    def _add_pairwise(self, output: torch.Tensor) -> torch.Tensor:
        """:meth:`add` when at most two chunks share a sample, with the same operations on the
        same numbers (so the same bits): where the chunk overlaps the one before, the carried
        weighted tail plus this chunk's weighted samples over the sum of the weights; after it,
        where its weight is 1 and no other chunk reaches, its own samples (plus 0, as the
        general path adds them to a zeroed buffer); its tail, weighted, is carried over. One
        pass over the chunk instead of four, and no accumulator of two chunks."""
        index = self.next_index
        starts = self.plan.starts
        start = starts[index]
        final = self.plan.final_until(index) - start  # this chunk's samples that become final
        w = self.plan.weights(index).to(output.dtype)
        done = output.new_empty(*output.shape[:-1], final)
        lap = 0
        if self._carry is not None:
            tail, weights = self._carry
            lap = tail.shape[-1]  # the previous chunk's overlap with this one
            torch.addcmul(tail, output[..., :lap], w[:lap], out=done[..., :lap])
            done[..., :lap].div_(weights + w[:lap])
        torch.add(output[..., lap:final], 0.0, out=done[..., lap:])
        self._carry = None
        if index + 1 < len(starts):
            rest = output[..., final:]
            # (0 + w, as the general path sums into zeros, is w itself: the weights are > 0)
            self._carry = (torch.addcmul(torch.zeros_like(rest), rest, w[final:]), w[final:])
        self.next_index += 1
        self.emitted = start + final
        return done
