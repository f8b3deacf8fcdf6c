"""Distributed data parallel training under ``torchrun``: the process group, rank-aware helpers, collectives.

``torchrun --nproc_per_node=N final_main.py ...`` starts N processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE`` and the rendezvous variables set; :func:`init_distributed` then joins the process group (NCCL on
CUDA, gloo on the CPU) and picks the process's device (``cuda:LOCAL_RANK``). A plain ``python3 final_main.py``
has none of those variables and gets a single-process :class:`Distributed` whose collectives are no-ops, so
the training code is the same in both cases.

Conventions: rank 0 alone writes files (checkpoints, logs, W&B, Hydra's folder); every decision that changes
control flow (skip a step, stop on a signal, stop early) is taken collectively so ranks never diverge.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Distributed", "init_distributed", "launched_by_torchrun"]


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or any launcher that sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job; the collectives are no-ops with one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (picklable plain data)."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0, None elsewhere (for large data only rank 0 needs)."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device_name: str) -> tuple[Distributed, torch.device | None]:
    """Join the torchrun job if there is one; returns the context and the device the rank must use (None:
    decide as in a single process). ``device_name`` is ``training.device``."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed(), None
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    device = None
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return Distributed(rank, world_size, local_rank), device
