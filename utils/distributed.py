"""Distributed data parallel training under ``torchrun``: the process group, rank-aware helpers, collectives.

``torchrun --nproc_per_node=N final_main.py ...`` starts N processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE`` and the rendezvous variables set; :func:`init_distributed` then joins the process group (NCCL on
CUDA, gloo on the CPU) and picks the process's device (``cuda:LOCAL_RANK``). A plain ``python3 final_main.py``
has none of those variables and gets a single-process :class:`Distributed` whose collectives are no-ops, so
the training code is the same in both cases.

Conventions: rank 0 alone writes files (checkpoints, logs, W&B, Hydra's folder); every decision that changes
control flow (skip a step, stop on a signal, stop early) is taken collectively so ranks never diverge.
A step only rank 0 takes and that can fail (a save, the data, the logger) runs through
:meth:`Distributed.on_main`, which tells every rank whether it worked: on a failure all ranks raise the same
one-line :class:`MainRankError` at once, instead of waiting in their next collective for a rank that is gone.
"""
from __future__ import annotations

import gc
import importlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from utils.errors import UserInputError, one_line

__all__ = ["Distributed", "MainRankError", "init_distributed", "launched_by_torchrun"]

T = TypeVar("T")


class MainRankError(UserInputError):
    """A step of rank 0 alone failed; raised with the same one-line message on every rank."""


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

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable plain data)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, what: str, action: Callable[[], T]) -> T | None:
        """Run ``action`` on rank 0 alone and tell every rank whether it worked; every rank must call this.

        Returns the action's result on rank 0 and None elsewhere. If it raises, every rank raises the same
        :class:`MainRankError`: the message of a UserInputError as it is, else ``<what> failed on rank 0:
        <type>: <first line>`` (rank 0 chains the original, so ``MRI_DEBUG=1`` shows its traceback). With one
        process the action just runs and its errors pass unchanged.
        """
        if not self.enabled:
            return action()
        result, failure, message = None, None, None
        if self.is_main:
            try:
                result = action()
            except Exception as err:  # noqa: BLE001 - whatever it is, the other ranks must hear of it
                failure = err
                if isinstance(err, UserInputError):
                    message = one_line(err)
                else:
                    detail = str(err).strip().splitlines()
                    message = f"{what} failed on rank 0: {type(err).__name__}" + (f": {detail[0]}" if detail else "")
        message = self.broadcast(message)
        if message is not None:
            raise MainRankError(message) from failure
        return result

    def close(self) -> None:
        """Leave the process group and free it now, while the interpreter is fully alive.

        The group's worker threads must end here: a gloo worker that drops its last collective's tensors
        during interpreter finalization needs the GIL, is ended by Python there, and the process aborts
        (``terminate called without an active exception``, exit -6, after a run that otherwise succeeded).
        Collecting garbage first frees a DDP model caught in a reference cycle (its reducer holds the group),
        so ``destroy_process_group`` drops the last reference and the group's destructor joins its threads.
        """
        if self.enabled and dist.is_initialized():
            gc.collect()
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
        # Imported before the group exists: importing torch._dynamo after it (DistributedDataParallel does on
        # construction) keeps the group alive past destroy_process_group, with the consequence described in
        # Distributed.close (seen with torch 2.13 and gloo).
        importlib.import_module("torch._dynamo")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                store=_attempt_store(rank, world_size))
    return Distributed(rank, world_size, local_rank), device


def _attempt_store(rank: int, world_size: int) -> dist.Store | None:
    """torchrun's shared store scoped to this attempt of the worker group; None: init_process_group's own.

    torchrun's c10d rendezvous keeps one TCPStore for all restarts of the worker group, so a restarted group's
    init_process_group can read the keys of the previous attempt (the gloo addresses or NCCL id of dead
    processes) and then fails to connect or hangs (pytorch/pytorch#135712; seen here with gloo). Workers under
    one torchrun agent share its ``TORCHELASTIC_RESTART_COUNT``, which names the attempt. Agents on several
    machines count restarts apart: there ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` for torchrun gives every
    attempt a new store (docs/distributed.md).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if os.environ.get("LOCAL_WORLD_SIZE") != str(world_size):
        if rank == 0 and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0:
            logging.getLogger("train").warning(
                "torchrun --max-restarts on several machines: export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun, "
                "or a restarted group may fail to connect (docs/distributed.md)")
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=default_pg_timeout)
    return dist.PrefixStore(f"attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)  # keys: attempt_N/<key>
