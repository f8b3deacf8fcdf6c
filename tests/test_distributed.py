"""DDP under torchrun: two gloo processes on the CPU against one process on the same sample order.

Module-scoped runs on the tiny preset serve all checks:
- ``ddp``: ``torchrun --nproc_per_node=2``, gradient accumulation 1, 2 epochs;
- ``resumed``: the same for 1 epoch (kept as ``ddp_epoch1.pt``), then ``training.resume=true`` to epoch 2;
- ``single``: one process, gradient accumulation 2 (the same samples per optimizer step), 1 epoch.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_training import SMALL_MODEL
from utils.data.dataset import SliceDataset
from utils.data.sampler import ShapeGroupedBatchSampler
from utils.inference.reconstruct import volume_loader
from utils.model.checkpoint import load_checkpoint, model_from_checkpoint
from utils.training.losses import MaskedSSIML1Loss
from utils.training.validate import validate

pytestmark = pytest.mark.slow  # end-to-end training runs

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # a deadlock fails the test instead of hanging the suite


def _train(tiny_data: Path, result_root: Path, exp_name: str, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    command = [
        *launcher, "final_main.py", "--config-name=demo", f"data.root={tiny_data}", "data.synthetic_preset=null",
        f"result_root={result_root}", f"exp_name={exp_name}", "logger.mode=disabled", "data.num_workers=0",
        *SMALL_MODEL, *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    before = set(REPO.iterdir())
    ddp = _train(tiny_data, root, "ddp", 2, "training.epochs=2", "training.grad_accumulation=1")
    _train(tiny_data, root, "resumed", 2, "training.epochs=1", "training.grad_accumulation=1")
    shutil.copy(root / "resumed/checkpoints/model.pt", root / "ddp_epoch1.pt")
    _train(tiny_data, root, "resumed", 2, "training.epochs=2", "training.grad_accumulation=1", "training.resume=true")
    single = _train(tiny_data, root, "single", 1, "training.epochs=1", "training.grad_accumulation=2")
    return {"root": root, "ddp_log": ddp.stdout + ddp.stderr, "single_log": single.stdout + single.stderr,
            "new_repo_entries": set(REPO.iterdir()) - before}


def test_sampler_shards_are_disjoint_equal_and_cover_the_epoch(tiny_data):
    shapes = SliceDataset(tiny_data / "train", accelerations=(4, 8)).example_shapes()
    for world in (1, 2, 3):
        shards = []
        for rank in range(world):
            sampler = ShapeGroupedBatchSampler(shapes, batch_size=2, seed=430, num_replicas=world, rank=rank)
            sampler.set_epoch(3)
            shards.append([index for batch in sampler for index in batch])
            assert len(list(sampler)) == sampler.batches_per_epoch()
            for batch in sampler:
                assert len({shapes[i] for i in batch}) == 1  # shape-grouped on every rank
        lengths = {len(list(ShapeGroupedBatchSampler(shapes, 2, seed=430, num_replicas=world, rank=r))) for r in range(world)}
        assert len(lengths) == 1  # equal batches per rank: nobody waits at a collective
        seen = [index for shard in shards for index in shard]
        assert set(seen) == set(range(len(shapes)))  # together they cover the epoch
        if sum(len(s) for s in shards) == len(shapes):
            assert len(seen) == len(set(seen))  # and are disjoint when nothing had to be repeated
    one_batch = [len(list(ShapeGroupedBatchSampler([(4, 8, 8)], 1, num_replicas=4, rank=r))) for r in range(4)]
    assert one_batch == [1, 1, 1, 1]  # fewer batches than ranks: repeated, so every rank still steps


def test_ddp_weights_match_one_process_with_the_same_samples_per_step(runs):
    ddp = load_checkpoint(runs["root"] / "ddp_epoch1.pt")
    single = load_checkpoint(runs["root"] / "single/checkpoints/model.pt")
    assert ddp["global_step"] == single["global_step"] == 4  # 8 slices: 4 steps of 2
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    np.testing.assert_allclose(ddp["train_loss_log"], single["train_loss_log"], rtol=1e-5)


def test_every_rank_ends_with_the_same_weights(runs):
    assert "weights identical on all 2 ranks" in runs["ddp_log"]


def test_sharded_validation_equals_one_process_validation(runs, tiny_data):
    checkpoint = load_checkpoint(runs["root"] / "ddp/checkpoints/model.pt")
    model = model_from_checkpoint(checkpoint, "model.pt")
    result = validate(model, volume_loader(SliceDataset(tiny_data / "val"), 1), MaskedSSIML1Loss(), torch.device("cpu"), progress=False)
    assert checkpoint["val_ssim_log"][-1][1] == pytest.approx(result.ssim, abs=1e-6)
    assert checkpoint["val_loss_log"][-1][1] == pytest.approx(result.loss, abs=1e-6)


def test_only_rank_zero_writes(runs):
    run_dir = runs["root"] / "ddp"
    assert len(list((run_dir / "hydra").iterdir())) == 1  # one Hydra folder for the whole job
    assert {p.name for p in run_dir.iterdir()} == {"checkpoints", "figures", "hydra", "train_loss_log.npy", "val_loss_log.npy",
                                                   "val_ssim_log.npy", "val_total_2026_log.npy", "train_step_loss_log.npy"}
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["curves.png", "val_epoch0.png", "val_epoch1.png"]
    assert runs["new_repo_entries"] == set()  # no stray logs or Hydra folders in the working directory
    assert not list(runs["root"].rglob("*.tmp"))


def test_resume_under_torchrun_continues_exactly(runs):
    straight = load_checkpoint(runs["root"] / "ddp/checkpoints/model.pt")
    resumed = load_checkpoint(runs["root"] / "resumed/checkpoints/model.pt")
    assert len(resumed["rng_per_rank"]) == 2
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert resumed["train_loss_log"] == straight["train_loss_log"]


def _nonfinite_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One DDP rank: two steps on small batches; rank 1's first batch has a NaN k-space sample."""
    import torch.distributed as torch_dist
    from omegaconf import OmegaConf
    from torch.nn.parallel import DistributedDataParallel

    from tests.test_recipe import _small_batches
    from utils.distributed import Distributed
    from utils.model.feature_varnet import FeatureVarNet
    from utils.training.interrupt import StopOnSignal
    from utils.training.loop import TrainState, train_one_epoch
    from utils.training.trainer import _weights_digest

    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    module = FeatureVarNet((0, 0, 1), sens_chans=2, sens_pools=2, image_chans=4, image_pools=2)
    model = DistributedDataParallel(module)
    batches = _small_batches(2 * world_size)[rank::world_size]
    if rank == 1:
        batches[0] = batches[0]._replace(masked_kspace=torch.full_like(batches[0].masked_kspace, float("nan")))
    settings = OmegaConf.create({"grad_accumulation": 1, "epochs": 1, "grad_clip": 1.0, "nonfinite": "skip", "amp": "none"})
    state = TrainState()
    train_one_epoch(model, batches, 2, MaskedSSIML1Loss(), torch.optim.Adam(model.parameters(), lr=1e-3), lambda stepped: None,
                    state, settings, torch.device("cpu"), StopOnSignal(), False, None, Distributed(rank, world_size))
    torch.save({"skipped": state.skipped_steps, "steps": state.global_step, "digest": _weights_digest(module)}, f"{out_dir}/{rank}.pt")
    torch_dist.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_nonfinite_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"{rank}.pt", weights_only=True) for rank in range(2)]
    assert [r["skipped"] for r in results] == [1, 1] and [r["steps"] for r in results] == [1, 1]
    assert results[0]["digest"] == results[1]["digest"]
