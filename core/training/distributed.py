"""torchrun support: one process per device, DistributedDataParallel, only rank 0 writes.

``torchrun --nproc-per-node N -m neckkit train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
the trainer then joins a process group (NCCL on GPU, gloo on CPU), splits every global batch
evenly across ranks, averages gradients with DDP, and averages logged losses across ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from neckkit.errors import NeckkitError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_world() -> World:
    """The world torchrun describes in the environment (a single process otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def init_world(device: torch.device) -> World:
    """Join the process group when launched by torchrun."""
    world = launched_world()
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return world


def close_world() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def mean_across(world: World, values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over ranks (each rank holds an equal share of the batch)."""
    if not world.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[key] for key in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return {key: float(value) / world.size for key, value in zip(keys, tensor.tolist(), strict=True)}


def device_for(world: World, requested: str = "auto") -> torch.device:
    """``cuda:<local_rank>`` when CUDA is there (or asked for), else CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NeckkitError("--device cuda was asked for but this machine has no CUDA GPU")
        return torch.device("cuda", world.local_rank if requested == "cuda" else torch.device(requested).index)
    return torch.device(requested)


def split_batch(world: World, indices: list[int]) -> list[int]:
    """This rank's share of a global batch; the batch size must divide evenly."""
    if len(indices) % world.size:
        raise NeckkitError(f"batch size {len(indices)} does not divide over {world.size} processes")
    share = len(indices) // world.size
    return indices[world.rank * share : (world.rank + 1) * share]
