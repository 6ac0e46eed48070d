"""Scale-out under ``torchrun``: this process's place in the launch, the process group, and the
few collective operations the training loop needs.

Each rank trains on its own examples with DistributedDataParallel (NCCL on CUDA, gloo on the
CPU); rank 0 validates, decides and writes. In a single process (the default :class:`Launch`)
every function here is a no-op, so the loop reads the same either way. The launch is given by the
caller (the command line reads ``torchrun``'s variables): the engine reads no environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from cumx_cli.engine.errors import ConfigError


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a launch: ``torchrun``'s ``RANK``, ``WORLD_SIZE`` and
    ``LOCAL_RANK``. The default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ConfigError(f"rank {self.rank} of world size {self.world_size} (local rank "
                              f"{self.local_rank}) is not a valid launch")


def is_distributed() -> bool:
    """Whether this process is in an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def setup(launch: Launch, device: torch.device) -> tuple[Launch, torch.device]:
    """Join the process group of a multi-process launch; its rank, world size and device.

    On CUDA each process uses the GPU of its *local* rank (its place on its own machine), set
    before the group is joined so that NCCL binds each process to its own GPU; the *global* rank
    (``RANK``, over every machine) decides the examples a process trains on and that rank 0
    alone validates and writes. One machine or several (``torchrun --nnodes``) is the same code:
    the rendezvous gives each process both ranks. A single process is returned as given.
    """
    if launch.world_size <= 1:
        return launch, device
    if device.type == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {launch.local_rank} has no GPU: this machine has "
                              f"{torch.cuda.device_count()}; start at most that many processes "
                              "per machine (torchrun --nproc-per-node)", field="device")
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Launch(dist.get_rank(), dist.get_world_size(), launch.local_rank), device


def wrap(model: torch.nn.Module, launch: Launch) -> torch.nn.Module:
    """The model as every rank trains it: DistributedDataParallel in a multi-process launch."""
    if launch.world_size > 1:
        return torch.nn.parallel.DistributedDataParallel(model)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    assert isinstance(inner, torch.nn.Module)
    return inner


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over every rank, in place (unchanged in a single process)."""
    if is_distributed():
        dist.all_reduce(values)
    return values


def from_rank0(values: list[float], rank: int) -> list[float]:
    """Rank 0's ``values`` on every rank (the others' are ignored)."""
    if not is_distributed():
        return values
    t = torch.tensor(values if rank == 0 else [0.0] * len(values), dtype=torch.float64)
    dist.broadcast(t, 0)
    return t.tolist()
