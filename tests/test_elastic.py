"""Preemption and crashes: elastic torchrun restarts, rank-0 failures that reach every rank, time-based
checkpoints and the free-space check (utils/training/elastic.py, checkpoint_policy.py, Distributed.on_main).

The end-to-end runs use 2 gloo processes on a 4-slice knee subset of the tiny preset (2 optimizer steps per
epoch and rank), so they stay short:
- ``straight``: torchrun, 1 epoch, uninterrupted: the reference;
- ``elastic``: ``torchrun --max-restarts=1``, a checkpoint every 0.0001 minutes (every step), rank 1 SIGKILLs
  itself after step 1 (test hook ``MRI_TEST_KILL_AT_STEP``); torchrun restarts the group, which resumes.
The failure and disk tests continue a copy of ``straight`` with 2 processes started without torchrun, so no
agent kills a waiting rank: each must exit on its own.
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_distributed import REPO, TIMEOUT_S, _train
from tests.test_training import SMALL_MODEL
from utils.distributed import Distributed
from utils.errors import UserInputError
from utils.model.checkpoint import save_checkpoint
from utils.training import elastic
from utils.training.checkpoint_policy import CheckpointTimer, DiskSpaceGuard, write_checkpoints

LOGS = ("train_loss_log.npy", "val_loss_log.npy", "val_ssim_log.npy", "val_total_2026_log.npy", "train_step_loss_log.npy")
FAST = ("training.figures=false",)


# ---------------------------------------------------------------------------------------------- unit tests

def test_checkpoint_timer_is_due_every_m_minutes_of_wall_time():
    now = [100.0]
    timer = CheckpointTimer(2, clock=lambda: now[0])
    assert timer.enabled and not timer.due()
    now[0] += 119
    assert not timer.due()
    now[0] += 1
    assert timer.due()
    timer.reset()  # any save restarts the count
    assert not timer.due()
    assert not CheckpointTimer(0).enabled and not CheckpointTimer(0, clock=lambda: 1e12).due()


class _Usage:
    def __init__(self, free: int):
        self.free = free

    def __call__(self, path):
        return self


def test_the_disk_guard_keeps_the_previous_checkpoint_and_warns_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="train")
    last = tmp_path / "model.pt"
    save_checkpoint(last, {"model": {"w": torch.ones(1000)}, "model_config": {}})
    before, size = last.read_bytes(), last.stat().st_size
    usage = _Usage(free=size)  # less than size x 1.1
    guard = DiskSpaceGuard(disk_usage=usage)
    new = {"model": {"w": torch.zeros(1000)}, "model_config": {}}
    for _ in range(3):
        assert write_checkpoints([last, tmp_path / "best_model.pt"], new, guard) == []
    assert last.read_bytes() == before and not (tmp_path / "best_model.pt").exists()
    assert caplog.text.count("keeping the previous checkpoint") == 1
    usage.free = 10 * size  # space was freed: saves resume
    assert write_checkpoints([last], new, guard) == [last]
    assert "checkpoints are written again" in caplog.text
    assert DiskSpaceGuard(reserve_gb=1e6, disk_usage=usage).room_for(last, last, 0) is False
    # no checkpoint yet: the tensors to be written are the estimate
    assert DiskSpaceGuard(disk_usage=_Usage(3999)).room_for(tmp_path / "x.pt", tmp_path / "none.pt", 4000) is False


def test_a_failed_write_is_one_line_naming_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "model_config": {}})
    before = path.read_bytes()

    def full_disk(obj, target):
        Path(target).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserInputError, match=r"model.pt: could not be written \(No space left on device\)"):
        write_checkpoints([path], {"model": {}, "model_config": {}}, DiskSpaceGuard())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_launch_id_names_the_torchrun_command_and_survives_its_restarts(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert elastic.launch_id() is None and elastic.restart_count() == 0
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-17")
    assert elastic.launch_id() == "run:job-17"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # static rendezvous: the agent process on this machine
    agent = elastic.launch_id()
    assert agent.startswith(f"agent:{socket.gethostname()}:{os.getppid()}:") and elastic.launch_id() == agent
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model": {}, "model_config": {}, "launch": agent})
    assert elastic.checkpoint_launch(path) == agent
    path.write_bytes(b"not a checkpoint")
    assert elastic.checkpoint_launch(path) is None and elastic.checkpoint_launch(tmp_path / "missing.pt") is None


def test_only_a_restart_of_the_same_launch_resumes(monkeypatch, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model": {}, "model_config": {}, "launch": "run:a"})
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert not elastic.resume_after_restart(path, Distributed())  # the first attempt: today's rules
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert elastic.resume_after_restart(path, Distributed())
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "b")  # another torchrun command over the same folder
    assert not elastic.resume_after_restart(path, Distributed())
    assert not elastic.resume_after_restart(tmp_path / "missing.pt", Distributed())


def test_a_restarted_group_gets_the_agent_store_scoped_to_its_attempt(monkeypatch):
    import torch.distributed as torch_dist

    from utils.distributed import _attempt_store

    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    assert _attempt_store(0, 2) is None  # not torchrun's shared store: init_process_group makes its own
    server = torch_dist.TCPStore("127.0.0.1", 0, 1, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    for key, value in {"TORCHELASTIC_USE_AGENT_STORE": "True", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(server.port), "TORCHELASTIC_RESTART_COUNT": "1"}.items():
        monkeypatch.setenv(key, value)
    _attempt_store(0, 2).set("rank_0", "address")
    assert server.get("attempt_1/rank_0") == b"address"  # the first attempt's keys stay apart
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # several machines: restart counts may differ, no prefix
    assert _attempt_store(0, 2) is None


def test_on_main_with_one_process_runs_the_step_and_lets_its_errors_through():
    assert Distributed().on_main("adding", lambda: 1 + 1) == 2
    with pytest.raises(ZeroDivisionError):
        Distributed().on_main("dividing", lambda: 1 / 0)


# ------------------------------------------------------------------------------------ 2 gloo processes

@pytest.fixture(scope="module")
def small_data(tiny_data, tmp_path_factory) -> Path:
    """The knee volumes of the tiny preset: 4 train slices (2 steps per epoch and rank), 4 val slices."""
    root = tmp_path_factory.mktemp("elastic_data") / "Data"
    for split in ("train", "val"):
        for kind in ("image", "kspace"):
            (root / split / kind).mkdir(parents=True)
            for file in (tiny_data / split / kind).glob("knee_*.h5"):
                shutil.copy(file, root / split / kind / file.name)
    return root


def _args(data: Path, result_root: Path, exp_name: str, *extra: str) -> list[str]:
    return ["final_main.py", "--config-name=demo", f"data.root={data}", "data.synthetic_preset=null",
            f"result_root={result_root}", f"exp_name={exp_name}", "logger.mode=disabled", "data.num_workers=0",
            "training.epochs=1", *FAST, *SMALL_MODEL, *extra]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _torchrun(args: list[str], max_restarts: int, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               f"--max-restarts={max_restarts}", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=_env(**env), timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def runs(small_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("elastic")
    _train(small_data, root, "straight", 2, "training.epochs=1", *FAST)
    elastic_args = _args(small_data, root, "elastic", "training.checkpoint_every_minutes=0.0001")
    restarted = _torchrun(elastic_args, 1, MRI_TEST_KILL_AT_STEP="1", MRI_TEST_KILL_RANK="1")
    return {"root": root, "elastic_args": elastic_args, "restarted": restarted}


def _assert_same_run(run_a: Path, run_b: Path) -> None:
    for name in LOGS:
        np.testing.assert_array_equal(np.load(run_a / name), np.load(run_b / name), err_msg=name)
    weights_a = torch.load(run_a / "checkpoints/model.pt", weights_only=True)["model"]
    weights_b = torch.load(run_b / "checkpoints/model.pt", weights_only=True)["model"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)


@pytest.mark.slow
def test_a_sigkilled_worker_is_restarted_by_torchrun_and_the_run_ends_bit_identical(runs):
    run = runs["restarted"]
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "exitcode: -9" in output, output[-4000:]  # rank 1 really died
    assert "checkpoint at step 1 (epoch 0, batch 1)" in output, output[-4000:]  # time-based, every step here
    assert "torchrun restart 1: continuing this run from its latest checkpoint" in output, output[-4000:]
    assert "resumed " in output and "at epoch 0, batch 1 (step 1)" in output, output[-4000:]
    _assert_same_run(runs["root"] / "straight", runs["root"] / "elastic")
    checkpoints = runs["root"] / "elastic/checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best_model.pt", "model.pt"]  # replaced, not piled up
    assert len(list((runs["root"] / "elastic/hydra").iterdir())) == 2  # one per attempt


@pytest.mark.slow
def test_a_fresh_torchrun_over_the_same_exp_name_is_still_refused_after_its_restart(runs):
    model = runs["root"] / "elastic/checkpoints/model.pt"
    before = model.read_bytes()
    run = _torchrun(runs["elastic_args"], 1)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-4000:]
    assert "already holds a run; continue it with training.resume=true" in output, output[-4000:]
    assert "torchrun restart 1: " in output and "was not written by this launch" in output, output[-4000:]  # not resumed silently
    assert model.read_bytes() == before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_processes(args: list[str], rank0_file_limit: int | None = None) -> list[tuple[int, str, float]]:
    """Start ranks 0 and 1 as plain processes (no torchrun agent to stop a waiting rank); wait for both.

    Returns (exit status, output, exit time) per rank. ``rank0_file_limit`` caps the size of any file rank 0
    writes (RLIMIT_FSIZE: a write beyond it fails with EFBIG, as on a full disk).
    """
    port = _free_port()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (rank0_file_limit, rank0_file_limit))

    processes = []
    for rank in (0, 1):
        env = _env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        processes.append(subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, preexec_fn=limit if rank == 0 and rank0_file_limit else None))
    exits: dict[int, float] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(exits) < 2 and time.monotonic() < deadline:
        for rank, process in enumerate(processes):
            if rank not in exits and process.poll() is not None:
                exits[rank] = time.monotonic()
        if exits and time.monotonic() - min(exits.values()) > 60:
            break  # one rank is stuck: fail below, after killing it
        time.sleep(0.2)
    for process in processes:
        if process.poll() is None:
            process.kill()
    return [(process.returncode, process.communicate()[0], exits.get(rank, float("inf"))) for rank, process in enumerate(processes)]


def _continue_straight(runs, exp_name: str) -> tuple[Path, bytes]:
    run_dir = runs["root"] / exp_name
    shutil.copytree(runs["root"] / "straight", run_dir)
    return run_dir, (run_dir / "checkpoints/model.pt").read_bytes()


@pytest.mark.slow
def test_a_failed_rank0_save_stops_both_ranks_with_one_error_and_keeps_the_checkpoint(runs, small_data):
    run_dir, before = _continue_straight(runs, "save_fails")
    args = _args(small_data, runs["root"], "save_fails", "training.epochs=2", "training.resume=true", "training.checkpoint_every_steps=1")
    (status0, output0, exit0), (status1, output1, exit1) = _two_processes(args, rank0_file_limit=len(before) // 2)
    assert status0 == status1 == 2, (output0[-3000:], output1[-3000:])
    assert abs(exit0 - exit1) < 30  # nobody waits for the gloo timeout
    errors = [[line for line in output.splitlines() if line.startswith("error: ")] for output in (output0, output1)]
    assert errors[0] == errors[1] and len(errors[0]) == 1, (output0[-2000:], output1[-2000:])
    assert "checkpoints/model.pt: could not be written" in errors[0][0]
    assert (run_dir / "checkpoints/model.pt").read_bytes() == before
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_too_little_disk_space_skips_the_saves_with_one_warning(runs, small_data):
    run_dir, before = _continue_straight(runs, "disk_full")
    best = (run_dir / "checkpoints/best_model.pt").read_bytes()
    args = _args(small_data, runs["root"], "disk_full", "training.epochs=2", "training.resume=true",
                 "training.checkpoint_every_steps=1", "training.disk_reserve_gb=1e9")
    (status0, output0, _), (status1, output1, _) = _two_processes(args)
    assert status0 == status1 == 0, (output0[-3000:], output1[-3000:])
    assert output0.count("keeping the previous checkpoint and skipping saves") == 1  # 3 saves skipped, one warning
    assert "checkpoint at step" not in output0
    assert (run_dir / "checkpoints/model.pt").read_bytes() == before
    assert (run_dir / "checkpoints/best_model.pt").read_bytes() == best
