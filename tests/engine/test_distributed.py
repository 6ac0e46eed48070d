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


def test_a_local_rank_without_its_gpu_is_refused_before_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA a process takes the GPU of its local rank (its place on its machine), not of its
    global rank; a machine with fewer GPUs than processes is one clear error, before the
    process group is joined (which would wait for the others)."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    joined: list[str] = []
    monkeypatch.setattr(distributed.dist, "init_process_group", joined.append)
    with pytest.raises(ConfigError, match=r"^local rank 2 has no GPU: this machine has 2; start at "
                       r"most that many processes per machine \(torchrun --nproc-per-node\)$"):
        distributed.setup(Launch(rank=6, world_size=8, local_rank=2), torch.device("cuda"))
    assert joined == []


def test_the_gpu_follows_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Global rank 5 of 8, local rank 1 (the second process of the third machine): cuda:1."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: chosen.append(backend))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 5)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 8)
    launch, device = distributed.setup(Launch(rank=5, world_size=8, local_rank=1),
                                       torch.device("cuda"))
    assert device == torch.device("cuda", 1) and launch == Launch(5, 8, 1)
    assert chosen == [torch.device("cuda", 1), "nccl"]  # the device is set before the group
