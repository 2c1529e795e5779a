"""Data-parallel training across processes: the small pieces scripts/pretrain.py needs.

Data parallelism in one paragraph: every process (a *rank*; one per GPU, or a few CPU processes)
holds a full copy of the model and trains on its own share of each global batch. After the
backward pass, PyTorch's ``DistributedDataParallel`` (DDP) averages the gradients across ranks
(an all-reduce over NCCL on GPUs, gloo on CPU), so every rank takes the same optimizer step and
the copies stay identical. ``torchrun`` starts the ranks and tells each who it is through
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); without them a
script runs as one ordinary process and nothing here needs a process group.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Context:
    """Who this process is: ``rank`` of ``world_size``, its ``device``, and the collective backend
    (None when running as a single process without torchrun)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the logs and checkpoints."""
        return self.rank == 0


def world_size_from_env() -> int:
    """The number of ranks torchrun started (1 without torchrun); readable before any setup."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str | None = None) -> Context:
    """Join the process group torchrun prepared (NCCL on CUDA, gloo on CPU), or run alone.

    Each rank uses GPU ``LOCAL_RANK`` when CUDA is available (``device="cpu"`` forces the CPU).
    """
    rank, world_size = int(os.environ.get("RANK", "0")), world_size_from_env()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but PyTorch sees no GPU; leave the device out (or use 'cpu') to run on the CPU")
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise ValueError(f"this is local rank {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: "
                         "start at most one process per GPU (torchrun --nproc_per_node <number of GPUs>)")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    backend = None
    if "RANK" in os.environ:  # started by torchrun (or another launcher that sets the variables)
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend, device_id=where if use_cuda else None)
    return Context(rank, world_size, local_rank, where, backend)


def teardown(context: Context) -> None:
    """Leave the process group, all ranks together (a rank tearing down while another still talks
    to it can crash the other)."""
    if context.backend is not None:
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, context: Context) -> torch.nn.Module:
    """``model`` in DDP when there are several ranks (its weights are broadcast from rank 0 then);
    the model itself when running alone."""
    if context.backend is None:
        return model
    return DistributedDataParallel(model, device_ids=[context.device.index] if context.device.type == "cuda" else None)


def mean_over_ranks(value: float, context: Context) -> float:
    """The mean of a per-rank number over all ranks (every rank gets it)."""
    return sum(gather(value, context)) / context.world_size


def gather(value: float, context: Context) -> list[float]:
    """Every rank's ``value``, in rank order (every rank gets the list)."""
    if context.backend is None:
        return [float(value)]
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=context.device)
    values = [torch.zeros_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(values, tensor)
    return [float(v) for v in values]


def barrier(context: Context) -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a checkpoint)."""
    if context.backend is not None:
        dist.barrier()
