"""The launch of a run: a single process by default, every collective a no-op there."""

from __future__ import annotations

import pytest
import torch

from cumx_cli.engine.errors import ConfigError
from cumx_cli.engine.training import distributed
from cumx_cli.engine.training.distributed import Launch


def test_a_single_process_changes_nothing() -> None:
    launch, device = distributed.setup(Launch(), torch.device("cpu"))
    assert launch == Launch(0, 1, 0) and device == torch.device("cpu")
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, launch) is model and distributed.unwrap(model) is model
    values = torch.tensor([1.0, 2.0])
    assert distributed.sum_over_ranks(values) is values and values.tolist() == [1.0, 2.0]
    assert distributed.from_rank0([3.0], rank=0) == [3.0]


@pytest.mark.parametrize(("rank", "world", "local"), [(2, 2, 0), (-1, 2, 0), (0, 0, 0), (0, 1, -1)])
def test_an_impossible_launch_is_refused(rank: int, world: int, local: int) -> None:
    with pytest.raises(ConfigError, match="not a valid launch"):
        Launch(rank, world, local)
