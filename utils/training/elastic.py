"""Elastic restarts under ``torchrun --max-restarts=N``: a restarted worker group continues its own run.

When a worker dies (OOM kill, segfault, a node's hiccup), torchrun stops the other workers and, while restarts
are left, starts the whole group again with ``TORCHELASTIC_RESTART_COUNT`` one higher and the same command
line, i.e. without ``training.resume=true``. The run then continues from its latest ``model.pt``, at the exact
position in the epoch, as a manual resume would, provided both hold:

- the group was restarted: ``TORCHELASTIC_RESTART_COUNT`` > 0 on some rank (agents of several nodes may count
  differently, so it is the maximum over the ranks);
- ``model.pt`` was written by this launch: every checkpoint records :func:`launch_id` (``launch``), the
  identity of the torchrun command that wrote it, and rank 0 compares it with its own.

The second condition keeps the refusal of a fresh start over an old run: a first attempt refused because the
folder holds another run fails again on every restart instead of silently continuing that other run, and a run
started with ``training.overwrite=true`` that dies before its first save starts over. A new torchrun command
(or a SLURM requeue) is a new launch: continue it with ``training.resume=true`` as before.

The launch identity is torchrun's run id (``--rdzv-id``; a fresh UUID with ``--standalone`` or a single-node
default launch), the same on every node and for every restart. Where torchrun leaves it at ``none`` (the static
rendezvous with an explicit ``--master-port``), it is the torchrun agent process of rank 0's machine instead
(host name, process id and start time), which is unique and stable on one machine.

``MRI_TEST_KILL_AT_STEP`` / ``MRI_TEST_KILL_RANK`` are test-only hooks (``tests/test_elastic.py``): the rank
SIGKILLs itself after that optimizer step (and its checkpoint), in the first attempt of a launch only.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
from pathlib import Path

import torch

from utils.distributed import Distributed

__all__ = ["restart_count", "launch_id", "checkpoint_launch", "resume_after_restart", "kill_point_for_tests"]

log = logging.getLogger("train")

KILL_AT_STEP_ENV = "MRI_TEST_KILL_AT_STEP"  # test-only
KILL_RANK_ENV = "MRI_TEST_KILL_RANK"        # test-only (default 0)


def restart_count() -> int:
    """How often torchrun has restarted this worker group (0: first attempt, or not under torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def _agent_identity() -> str:
    """The parent (torchrun agent) process on this machine: host, pid and its start time (pids are reused)."""
    parent = os.getppid()
    try:
        started = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "?"
    return f"agent:{socket.gethostname()}:{parent}:{started}"


def launch_id() -> str | None:
    """The identity of the torchrun command this process belongs to, the same across its restarts; None
    outside torchrun (a plain ``python3 final_main.py`` is never restarted)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    run_id = os.environ["TORCHELASTIC_RUN_ID"]
    return f"run:{run_id}" if run_id not in ("", "none") else _agent_identity()


def checkpoint_launch(path: Path) -> str | None:
    """The ``launch`` recorded in the checkpoint at ``path``; None if it is missing, unreadable or has none.

    Memory-mapped: only the small pickled part is read, not the tensors of a large checkpoint.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not this launch's
        return None
    launch = checkpoint.get("launch") if isinstance(checkpoint, dict) else None
    return launch if isinstance(launch, str) else None


def resume_after_restart(checkpoint: Path, dist: Distributed) -> bool:
    """True on every rank when torchrun restarted the group and ``checkpoint`` was written by this launch.

    Collective under DDP (every rank calls it): the restart counts are gathered, rank 0 decides.
    """
    count = max(dist.gather(restart_count()))
    decision = False
    if dist.is_main and count > 0:
        saved, current = checkpoint_launch(checkpoint), launch_id()
        decision = saved is not None and saved == current
        if decision:
            log.info("torchrun restart %d: continuing this run from its latest checkpoint %s", count, checkpoint)
        elif checkpoint.exists():
            log.warning("torchrun restart %d: %s was not written by this launch (%s, this one is %s): not resumed",
                        count, checkpoint, saved, current)
        else:
            log.info("torchrun restart %d: no checkpoint of this run yet, starting from scratch", count)
    return bool(dist.broadcast(decision))


def kill_point_for_tests(step: int, rank: int) -> None:
    """Test-only: SIGKILL this process after optimizer step ``MRI_TEST_KILL_AT_STEP`` on rank
    ``MRI_TEST_KILL_RANK``, in the first attempt of a launch only (a restart must get past it)."""
    at_step = os.environ.get(KILL_AT_STEP_ENV)
    if at_step and int(at_step) == step and int(os.environ.get(KILL_RANK_ENV, "0")) == rank and restart_count() == 0:
        log.warning("test hook %s=%s: SIGKILL rank %d", KILL_AT_STEP_ENV, at_step, rank)
        os.kill(os.getpid(), signal.SIGKILL)
