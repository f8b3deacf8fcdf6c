"""The other ways to reconstruct: the 2026 harness contract and sharded reconstruction under torchrun.

Both are checked against a plain ``reconstruct_from_ckpt.py`` run on the tiny leaderboard, with an untrained
small ``demo_varnet`` (``identity_init``: its output is the data-consistent SENSE reconstruction, a real image).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from tests.bad_inputs import edit_h5, link_tree, replace_dataset
from tests.test_training import SMALL_MODEL
from utils.data.layout import list_volumes
from utils.errors import UserInputError
from utils.evaluation.leaderboard import score_leaderboard
from utils.inference.reconstruct import HARNESS_WARMUP_SLICES
from utils.inference.writer import ReconstructionWriter
from utils.learning import test_part
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    """``result/<name>/checkpoints/best_model.pt`` of an untrained small model, as the harness expects it."""
    from omegaconf import OmegaConf

    folder = tmp_path_factory.mktemp("result") / "harness" / "checkpoints"
    folder.mkdir(parents=True)
    config = OmegaConf.to_container(load_model_config("demo_varnet", SMALL_MODEL), resolve=True)
    torch.manual_seed(0)
    save_checkpoint(folder / "best_model.pt", {"model": build_model(config).state_dict(), "model_config": config, "epoch": 0})
    return folder


def _reconstruct(checkpoint: Path, leaderboard: Path, out: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    command = [*launcher, "reconstruct_from_ckpt.py", "-c", str(checkpoint), "-p", str(leaderboard), "-g", "-1",
               "-b", "1", "-o", str(out), "--num_workers", "0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # torchrun's ranks run 1 thread each
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run


@pytest.fixture(scope="module")
def single_process(checkpoint_dir, tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    _reconstruct(checkpoint_dir / "best_model.pt", tiny_data / "leaderboard", out)
    return out


def _drive_harness(exp_dir: Path, leaderboard: Path, out: Path) -> tuple[int, list[float]]:
    """What recon_eval.py does: load once, prep each volume untimed, then each slice at batch 1, timed after 5."""
    assert test_part.INPUT_KIND == "kspace"
    device = torch.device("cpu")
    model = test_part.load_model(SimpleNamespace(exp_dir=exp_dir), device)
    seen, timings = 0, []
    for acc in ("acc4", "acc8"):
        kspace_paths = list_volumes(leaderboard / acc / "kspace")
        writer = ReconstructionWriter(out / acc, {p.name: h5py.File(p, "r")["kspace"].shape[0] for p in kspace_paths})
        for kspace_path in kspace_paths:
            ctx = test_part.prep_volume(leaderboard / acc / "image" / kspace_path.name, kspace_path, device)
            for s in range(ctx["num_slices"]):
                start = time.perf_counter()
                image = test_part.recon_slice(model, ctx, s)
                if seen >= HARNESS_WARMUP_SLICES:
                    timings.append(time.perf_counter() - start)
                seen += 1
                assert image.shape == (384, 384) and image.dtype == torch.float32
                writer.add(kspace_path.name, s, image.cpu().numpy())
        writer.close()
    return seen, timings


@pytest.mark.slow
def test_harness_contract_gives_the_reconstructions_of_reconstruct_from_ckpt(checkpoint_dir, tiny_data, single_process, tmp_path):
    torch.set_num_threads(1)  # as the reference run
    try:
        seen, timings = _drive_harness(checkpoint_dir, tiny_data / "leaderboard", tmp_path)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    assert seen == 8 and len(timings) == 3 and all(t > 0 for t in timings)
    for path in sorted(single_process.glob("acc*/*.h5")):
        with h5py.File(path, "r") as expected, h5py.File(tmp_path / path.parent.name / path.name, "r") as actual:
            reference = expected["reconstruction"][()]
            np.testing.assert_allclose(actual["reconstruction"][()], reference, rtol=0, atol=1e-6 * reference.max())
    harness = score_leaderboard(tiny_data / "leaderboard", tmp_path, progress=False)
    plain = score_leaderboard(tiny_data / "leaderboard", single_process, progress=False)
    assert 0.5 < harness.mean(4, full=True) < 1 and harness.mean(4, full=True) == pytest.approx(plain.mean(4, full=True), abs=1e-6)


def test_harness_refuses_a_broken_volume_in_one_line(checkpoint_dir, tiny_data, tmp_path):
    leaderboard = link_tree(tiny_data / "leaderboard", tmp_path / "leaderboard")
    kspace_path = list_volumes(leaderboard / "acc4" / "kspace")[0]

    def poison(handle):
        kspace = handle["kspace"][()]
        kspace[0, 0, 0, 0] = np.nan
        replace_dataset(handle, "kspace", kspace)

    edit_h5(kspace_path, poison)
    with pytest.raises(UserInputError, match=f"{kspace_path.name}.*NaN"):
        test_part.prep_volume(None, kspace_path, "cpu")
    with pytest.raises(UserInputError, match="best_model.pt.*not found"):
        test_part.load_model(SimpleNamespace(exp_dir=tmp_path / "nothing"), "cpu")


@pytest.mark.slow
def test_torchrun_shards_volumes_and_writes_byte_identical_files(checkpoint_dir, tiny_data, single_process, tmp_path):
    run = _reconstruct(checkpoint_dir / "best_model.pt", tiny_data / "leaderboard", tmp_path, nproc=2)
    assert "2 ranks" in run.stdout and "total: 8 slices on 2 ranks" in run.stdout
    assert run.stdout.count("model: ") == 1  # one report, gathered on rank 0
    expected = sorted(p.relative_to(single_process) for p in single_process.glob("acc*/*.h5"))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.glob("acc*/*.h5")) == expected and len(expected) == 4
    for relative in expected:
        assert (tmp_path / relative).read_bytes() == (single_process / relative).read_bytes(), relative
