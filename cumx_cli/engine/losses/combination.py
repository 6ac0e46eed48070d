"""Which source combinations the Combination Loss sums over (spec §2.1)."""

from __future__ import annotations

from functools import cache
from itertools import combinations

import torch


@cache
def source_combinations(num_sources: int, combine: bool = True) -> tuple[tuple[int, ...], ...]:
    """Subsets of ``range(num_sources)`` that the loss averages over.

    With ``combine`` (CL), every subset of size 1 to ``num_sources - 1``: singletons first, then
    pairs, then triples..., each size in lexicographic order, as both reference codes list them
    (14 for 4 sources; the full set is excluded). Without it, the singletons only.
    """
    if num_sources < 1:
        raise ValueError("at least one source is needed")
    sizes = range(1, max(2, num_sources)) if combine else range(1, 2)
    return tuple(c for k in sizes for c in combinations(range(num_sources), k))


def combination_matrix(num_sources: int, combine: bool = True,
                       device: torch.device | None = None) -> torch.Tensor:
    """0/1 matrix (combination, source): row ``c`` sums the sources of combination ``c``.

    Shapes:
        returns: (combination, source), float32
    """
    combos = source_combinations(num_sources, combine)
    m = torch.zeros(len(combos), num_sources, device=device)
    for row, combo in enumerate(combos):
        m[row, list(combo)] = 1.0
    return m
