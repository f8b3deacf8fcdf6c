"""The 2026 organisers' harness runs here unmodified: its import and call contract, driven by stand-ins written
from its facts (tests/harness_2026.py), on leaderboard folders with lesion boxes and names that are not
challenge names, with a checkpoint and with an expert manifest; and its numbers equal ``leaderboard_eval.py
--edition 2026`` on the reconstructions it wrote."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.harness_2026 import install
from tests.test_training import SMALL_MODEL
from utils.common.loss_function import SSIMLoss
from utils.common.utils import save_reconstructions
from utils.data.annotations import read_annotations
from utils.errors import UserInputError
from utils.evaluation.edition2026 import score_leaderboard_2026
from utils.evaluation.official_reference import OfficialSSIM
from utils.learning import test_part
from utils.metrics.score import edition_2026
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
ODD_NAMES = {"acc4": "public_acc4_7.h5", "acc8": "scan 0001.h5"}  # the 2026 names are not fixed


@pytest.fixture(scope="module")
def leaderboard(tiny_data, tmp_path_factory) -> Path:
    """The tiny leaderboard (with lesion boxes) plus one volume per acceleration under a name of no pattern."""
    root = tmp_path_factory.mktemp("lb") / "leaderboard"
    shutil.copytree(tiny_data / "leaderboard", root)
    for acc, name in ODD_NAMES.items():
        for kind in ("image", "kspace"):
            shutil.copyfile(root / acc / kind / "knee_test1.h5", root / acc / kind / name)
    return root


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    """A copy of the repository with the stand-in harness, and ``../result`` beside it holding a checkpoint
    (``result/net``) and an expert set (``result/set/experts.yaml``)."""
    top = tmp_path_factory.mktemp("harness")
    repo = install(REPO, top / "repo")
    config = OmegaConf.to_container(load_model_config("demo_varnet", SMALL_MODEL), resolve=True)
    torch.manual_seed(0)
    checkpoint = top / "result" / "net" / "checkpoints" / "best_model.pt"
    save_checkpoint(checkpoint, {"model": build_model(config).state_dict(), "model_config": config, "epoch": 1, "config": {}})
    (top / "result" / "set").mkdir(parents=True)
    (top / "result" / "set" / "experts.yaml").write_text(f"router: rule\nexperts: {{brain: {checkpoint}, knee: {checkpoint}}}\n")
    return repo


def _recon_eval(repo: Path, net: str, leaderboard: Path) -> dict[str, float]:
    run = subprocess.run([sys.executable, "recon_eval.py", "-n", net, "-p", str(leaderboard)], cwd=repo, capture_output=True,
                         text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    exact = next(line for line in run.stdout.splitlines() if line.startswith("exact: ")).split()[1:]
    return dict(zip(("full4", "full8", "bbox4", "bbox8", "ms"), map(float, exact))) | {"stdout": run.stdout}


@pytest.mark.slow
@pytest.mark.parametrize("net", ["net", "set"], ids=["checkpoint", "expert manifest"])
def test_the_harness_runs_and_scores_as_leaderboard_eval_2026(harness, leaderboard, net):
    printed = _recon_eval(harness, net, leaderboard)
    assert "Leaderboard SSIM_bbox : " in printed["stdout"] and printed["bbox4"] > 0 and printed["bbox8"] > 0
    written = harness.parent / "result" / net / "reconstructions_leaderboard"
    for acc, name in ODD_NAMES.items():
        assert (written / acc / name).is_file()
    ours = edition_2026(score_leaderboard_2026(leaderboard, written, progress=False))
    for acc in (4, 8):  # our float64-summed windows against the stand-in's float32 convolution
        assert ours.ssim_full[acc] == pytest.approx(printed[f"full{acc}"], abs=2e-5)
        assert ours.ssim_bbox[acc] == pytest.approx(printed[f"bbox{acc}"], abs=2e-5)


def test_prep_volume_takes_any_name_and_needs_no_image_file(leaderboard):
    kspace = leaderboard / "acc8" / "kspace" / ODD_NAMES["acc8"]
    ctx = test_part.prep_volume(None, kspace, "cpu")  # a missing image file: the model reads k-space only
    assert ctx["num_slices"] == 2 and ctx["fname"] == ODD_NAMES["acc8"] and ctx["acceleration"] == 8
    image = leaderboard / "acc8" / "image" / ODD_NAMES["acc8"]
    with pytest.raises(UserInputError, match="scan 0001.h5: has no k-space file"):
        test_part.prep_volume(image, None, "cpu")  # the harness passes None where kspace/<name> is absent


def test_load_model_finds_the_manifest_of_an_expert_set(harness):
    from utils.experts.serve import ExpertSet

    model = test_part.load_model(SimpleNamespace(exp_dir=harness.parent / "result" / "set" / "checkpoints"), "cpu")
    assert isinstance(model, ExpertSet) and set(model.experts) == {"brain", "knee"}


def test_ssim_loss_has_the_baselines_interface_and_numbers():
    loss = SSIMLoss()
    assert loss.w.shape == (1, 1, 7, 7) and loss.w.dtype == torch.float32 and float(loss.w.sum()) == pytest.approx(1.0)
    assert (loss.win_size, loss.k1, loss.k2, loss.cov_norm) == (7, 0.01, 0.03, 49 / 48)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 40, 36, generator=generator), torch.rand(2, 40, 36, generator=generator)
    data_range = torch.tensor([1.0, 0.8])
    official = OfficialSSIM()  # the 2025 script's module, an independent implementation of the same SSIM
    expected = 1 - torch.stack([official(x[i], y[i], data_range[i]) for i in range(2)]).mean()
    assert float(loss(x, y, data_range)) == pytest.approx(float(expected), abs=1e-6)


def test_save_reconstructions_writes_the_harness_layout(tmp_path):
    volume = np.random.default_rng(0).random((3, 384, 384), dtype=np.float32)
    save_reconstructions({"a b.h5": volume}, tmp_path / "out" / "acc4")
    with h5py.File(tmp_path / "out" / "acc4" / "a b.h5", "r") as handle:
        np.testing.assert_array_equal(handle["reconstruction"][()], volume)
    assert [p.name for p in (tmp_path / "out" / "acc4").iterdir()] == ["a b.h5"]  # no temporary file left


def test_the_leaderboard_folder_carries_boxes(leaderboard):
    boxes = [read_annotations(path) for path in sorted((leaderboard / "acc4" / "image").glob("*.h5"))]
    assert any(boxes_by_slice for boxes_by_slice in boxes)
