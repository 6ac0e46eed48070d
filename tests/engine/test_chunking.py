"""Chunk plans and the weighted overlap-add: pure index arithmetic, no model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch

from cumx_cli.engine.inference.chunking import OverlapAdd, plan_chunks


def _check_plan(length: int, chunk: int, overlap: int, rng: np.random.Generator) -> None:
    plan = plan_chunks(length, chunk, overlap)
    assert plan.starts[0] == 0 and plan.starts[-1] + plan.size == length
    assert plan.size <= max(chunk, 1) or length <= chunk
    assert all(a + plan.size - b >= overlap for a, b in pairwise(plan.starts))
    ola = OverlapAdd(plan)
    x = torch.from_numpy(rng.standard_normal((2, length)).astype(np.float32))
    y = torch.cat([ola.add(x[:, s : s + plan.size]) for s in plan.starts], dim=-1)
    assert torch.allclose(y, x, atol=1e-4)  # float sums over up to hundreds of overlaps


def test_random_plans_cover_the_track_with_equal_chunks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(150):
        length = int(rng.integers(1, 20_000))
        chunk = int(rng.integers(max(2, length // 100), 3000))  # up to ~200 chunks a track
        overlap = int(rng.integers(0, chunk))
        _check_plan(length, chunk, overlap, rng)


@pytest.mark.parametrize(("length", "chunk", "overlap"), [
    (1, 2, 1), (2, 2, 1), (3, 2, 1), (397, 2, 1), (1000, 7, 6), (900, 300, 299),
    (20_000, 3000, 0), (6000, 3000, 0), (6001, 3000, 0), (2999, 3000, 100),
])
def test_edge_plans(length: int, chunk: int, overlap: int) -> None:
    """The smallest chunks, an overlap one sample short of the chunk, exact multiples."""
    _check_plan(length, chunk, overlap, np.random.default_rng(length))


def test_balanced_plan_for_three_minutes() -> None:
    plan = plan_chunks(180 * 44100, 30 * 44100, 44100)
    assert len(plan) == 7 and plan.size == 1_171_800  # 26.6 s each: 186 s of work for 180 s


def test_pairwise_overlap_add_gives_the_general_bits() -> None:
    """Where at most two chunks share a sample, add() carries only the overlapped tail; its
    output must be the general accumulator's, bit for bit, chunk by chunk (also on a silent
    stretch, where a sign of zero could differ)."""
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(200):
        length = int(rng.integers(2, 20_000))
        chunk = int(rng.integers(2, 3000))
        plan = plan_chunks(length, chunk, int(rng.integers(0, chunk)))
        fast, general = OverlapAdd(plan), OverlapAdd(plan)
        general.pairwise = False
        general.wsum = torch.zeros(2 * plan.size)
        x = torch.from_numpy(rng.standard_normal((3, 2, length)).astype(np.float32))
        x[..., length // 3 : length // 2] = -0.0
        for start in plan.starts:
            a, b = fast.add(x[..., start : start + plan.size]), general.add(x[..., start : start + plan.size])
            assert a.shape == b.shape and torch.equal(a, b)
            assert torch.equal(torch.signbit(a), torch.signbit(b))
        checked += fast.pairwise and len(plan) > 1
    assert checked > 50
    assert OverlapAdd(plan_chunks(180 * 44100, 30 * 44100, 44100)).pairwise
    assert not OverlapAdd(plan_chunks(1000, 7, 6)).pairwise  # each sample in up to 7 chunks
