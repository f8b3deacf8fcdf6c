"""Flip test-time augmentation and ensembles on the tiny data: ``reconstruct_from_ckpt.py --tta flip``, a manifest
with an ensemble and ``tta: flip`` through reconstruct_from_ckpt.py and through the 2026 harness contract."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.bad_inputs import link_tree
from tests.test_ensembles import SCC_2, small_checkpoint
from tests.test_training import SMALL_MODEL
from utils.data.dataset import SliceDataset
from utils.evaluation.leaderboard import score_leaderboard
from utils.experts.serve import ExpertSet, load_expert_set
from utils.experts.validate import validate_experts
from utils.inference.load import Reconstructor, load_reconstructor
from utils.inference.reconstruct import reconstruct_dataset
from utils.learning import test_part
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import save_checkpoint
from utils.mri.reflect import reflected_columns

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600
CPU = torch.device("cpu")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run


def _reconstruct(checkpoint: Path, leaderboard: Path, out: Path, *extra: str) -> str:
    return _run("reconstruct_from_ckpt.py", "-c", str(checkpoint), "-p", str(leaderboard), "-g", "-1", "-o", str(out),
                "--num_workers", "0", "--no-progress", *extra).stdout


def _identity_init_run(folder: Path) -> Path:
    """``folder/checkpoints/best_model.pt``: the small demo_varnet at initialisation (close to equivariant)."""
    config = OmegaConf.to_container(load_model_config("demo_varnet", SMALL_MODEL), resolve=True)
    torch.manual_seed(0)
    path = folder / "checkpoints" / "best_model.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(path, {"model": build_model(config).state_dict(), "model_config": config, "epoch": 0})
    return path


def _read(folder: Path) -> dict[str, np.ndarray]:
    files = {}
    for path in sorted(folder.glob("acc*/*.h5")):
        with h5py.File(path, "r") as handle:
            files[f"{path.parent.name}/{path.name}"] = handle["reconstruction"][()]
    return files


def _write(folder: Path, files: dict[str, np.ndarray]) -> Path:
    for name, volume in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / name, "w") as handle:
            handle.create_dataset("reconstruction", data=volume)
    return folder


def _off_by_one(plain: dict[str, np.ndarray], tta: dict[str, np.ndarray], leaderboard: Path) -> dict[str, np.ndarray]:
    """The TTA mean with the reflected output mapped back one column too far: the reflected-and-back image is
    ``2 * tta - plain`` wherever both passes see a pixel (tiny widths are even: every shown pixel)."""
    shifted = {}
    for name, image in plain.items():
        with h5py.File(leaderboard / name.split("/")[0] / "kspace" / name.split("/")[1], "r") as handle:
            width = handle["kspace"].shape[-1]
        _, both = reflected_columns(width, 384)
        back = np.roll(2 * tta[name] - image, 1, axis=-1)
        shifted[name] = np.where(both.numpy(), (image + back) / 2, image).astype(np.float32)
    return shifted


def _tta_against_plain_and_off_by_one(checkpoint: Path, leaderboard: Path, out: Path) -> dict[str, float]:
    """Leaderboard Total of the plain, the TTA and the off-by-one reconstructions, and the largest slice difference
    between plain and TTA."""
    report = _reconstruct(checkpoint, leaderboard, out / "plain")
    assert "test-time augmentation none" in report
    report = _reconstruct(checkpoint, leaderboard, out / "tta", "--tta", "flip")
    assert "test-time augmentation flip" in report and "model: " in report and (out / "tta" / "timing.json").is_file()
    plain, tta = _read(out / "plain"), _read(out / "tta")
    _write(out / "off", _off_by_one(plain, tta, leaderboard))
    scores = {name: score_leaderboard(leaderboard, out / name, progress=False) for name in ("plain", "tta", "off")}
    worst = max(abs(a.ssim - b.ssim) for a, b in zip(scores["plain"].slices, scores["tta"].slices))
    return {**{name: result.total for name, result in scores.items()}, "worst slice": worst}


@pytest.mark.slow
def test_tta_of_an_identity_init_model_is_close_to_plain_and_off_by_one_is_worse(tiny_data, tmp_path):
    checkpoint = _identity_init_run(tmp_path / "run")
    ssim = _tta_against_plain_and_off_by_one(checkpoint, tiny_data / "leaderboard", tmp_path)
    # measured (Total of the 8 slices): plain 0.8835, tta 0.8842, off by one 0.8745; worst slice 0.0024
    assert abs(ssim["tta"] - ssim["plain"]) < 0.002 and ssim["worst slice"] < 0.005, ssim
    assert ssim["off"] < ssim["tta"] - 0.004, ssim


@pytest.mark.slow
def test_tta_of_a_trained_small_model_is_close_to_plain_and_off_by_one_is_worse(tiny_data, tmp_path):
    _run("final_main.py", "--config-name=demo", f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={tmp_path}",
         "exp_name=trained", "training.epochs=1", "logger.mode=disabled", "data.num_workers=0", "training.figures=false", *SMALL_MODEL)
    ssim = _tta_against_plain_and_off_by_one(tmp_path / "trained/checkpoints/best_model.pt", tiny_data / "leaderboard", tmp_path)
    # measured (Total of the 8 slices): plain 0.8932, tta 0.8952, off by one 0.8851; worst slice 0.0048
    assert abs(ssim["tta"] - ssim["plain"]) < 0.005 and ssim["worst slice"] < 0.01, ssim
    assert ssim["off"] < ssim["tta"] - 0.004, ssim


def _own_reconstructions(checkpoint: Path, leaderboard: Path, anatomy: str, out: Path) -> dict[str, np.ndarray]:
    """One checkpoint with TTA on its own, on the volumes of one anatomy: the independent reference."""
    member = load_reconstructor(checkpoint, CPU, "flip")
    for acc in (acc for acc in ("acc4", "acc8") if any((leaderboard / acc / "kspace").glob(f"{anatomy}_*.h5"))):
        dataset = SliceDataset(leaderboard / acc, member.transform, kspace_only=True, keep_volume=lambda name: name.anatomy == anatomy)
        reconstruct_dataset(member, dataset, out / acc, CPU, progress=False)
    return _read(out)


@pytest.mark.slow
def test_an_ensemble_with_tta_serves_the_same_through_reconstruct_and_the_harness(tiny_data, tmp_path):
    leaderboard = link_tree(tiny_data / "leaderboard", tmp_path / "leaderboard")
    for path in [*leaderboard.glob("acc4/*/knee_*.h5"), *leaderboard.glob("acc8/*/brain_*.h5")]:
        path.unlink()  # 4 slices: brain at acc4, knee at acc8
    _identity_init_run(tmp_path / "run")
    small_checkpoint(tmp_path / "b.pt", 1)
    small_checkpoint(tmp_path / "c_scc.pt", 2, SCC_2)
    served = tmp_path / "served"  # a folder of its own: the harness finds experts.yaml where there is no best_model.pt
    served.mkdir()
    (served / "experts.yaml").write_text("router: rule\ntta: flip\nexperts:\n"
                                         "  brain: [../run/checkpoints/best_model.pt, ../c_scc.pt]\n  knee: ../b.pt\n")
    report = _reconstruct(served / "experts.yaml", leaderboard, tmp_path / "out")
    members = [served / "../run/checkpoints/best_model.pt", served / "../c_scc.pt"]
    assert "test-time augmentation flip" in report and "(manifest, router, 3 checkpoints for 2 routes, device)" in report
    assert f"  brain: 1 volumes, 2 slices (ensemble of 2: {', '.join(map(str, members))})" in report
    assert f"  knee: 1 volumes, 2 slices ({served / '../b.pt'})" in report
    routed = _read(tmp_path / "out")

    alone = [_own_reconstructions(path, leaderboard, "brain", tmp_path / f"brain_{i}") for i, path in enumerate(members)]
    expected = {name: sum(files[name] for files in alone) / 2 for name in alone[0]}
    expected.update(_own_reconstructions(served / "../b.pt", leaderboard, "knee", tmp_path / "knee"))
    assert sorted(expected) == sorted(routed) == ["acc4/brain_test1.h5", "acc8/knee_test1.h5"]
    for name, volume in expected.items():
        np.testing.assert_allclose(routed[name], volume, rtol=0, atol=1e-6 * volume.max(), err_msg=name)

    harness = test_part.load_model(SimpleNamespace(exp_dir=served / "checkpoints"), "cpu")
    assert isinstance(harness, ExpertSet) and harness.tta == "flip"
    for name in routed:
        ctx = test_part.prep_volume(None, leaderboard / name.split("/")[0] / "kspace" / name.split("/")[1], "cpu")
        images = np.stack([test_part.recon_slice(harness, ctx, s).numpy() for s in range(ctx["num_slices"])])
        np.testing.assert_allclose(images, routed[name], rtol=0, atol=1e-6 * images.max(), err_msg=name)


@pytest.mark.slow
def test_validate_experts_scores_an_ensemble_with_a_compressed_member(tiny_data, tmp_path):
    val = link_tree(tiny_data / "val", tmp_path / "val")
    for path in [*val.glob("*/knee_*.h5"), *val.glob("*/brain_acc8_*.h5")]:
        path.unlink()  # one brain acc4 volume, 2 slices
    small_checkpoint(tmp_path / "b.pt", 1)
    small_checkpoint(tmp_path / "c_scc.pt", 2, SCC_2)
    (tmp_path / "experts.yaml").write_text("experts: {all: [b.pt, c_scc.pt]}\n")
    result = validate_experts(load_expert_set(tmp_path / "experts.yaml", CPU), val, CPU)
    alone = [validate_experts(load_expert_set(_one_route(tmp_path, name), CPU), val, CPU) for name in ("b.pt", "c_scc.pt")]
    assert len(result.scores) == 2 and 0.5 < result.mean("brain_acc4") < 1
    assert result.mean("brain_acc4", "zero_filled_ssim") == pytest.approx(alone[0].mean("brain_acc4", "zero_filled_ssim"))
    assert result.mean("brain_acc4") != pytest.approx(alone[1].mean("brain_acc4"))


def _one_route(folder: Path, checkpoint: str) -> Path:
    path = folder / f"{checkpoint}.yaml"
    path.write_text(f"experts: {{all: {checkpoint}}}\n")
    return path


def test_a_manifest_beside_best_model_is_ignored_with_a_warning(tmp_path, caplog):
    checkpoint = _identity_init_run(tmp_path / "run")
    (tmp_path / "run" / "experts.yaml").write_text("tta: flip\nexperts: {all: checkpoints/best_model.pt}\n")
    with caplog.at_level(logging.WARNING, logger="routing"):
        model = test_part.load_model(SimpleNamespace(exp_dir=checkpoint.parent), "cpu")
    assert isinstance(model, Reconstructor) and model.tta == "none"
    assert f"{checkpoint} is served as it is; {tmp_path / 'run' / 'experts.yaml'} beside it is ignored" in caplog.text
