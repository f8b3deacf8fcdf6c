"""PromptMR+ through every path a FeatureVarNet takes: final_main.py, resume, an expert manifest to
reconstruct_from_ckpt.py and the scorer, the 2026 harness contract, and torchrun (a narrow configuration of
``promptmr_plus_8gb``, so that a CPU runs it in seconds; the 8 GB sizes are the same code)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from utils.learning import test_part
from utils.model.checkpoint import load_checkpoint
from utils.model.promptmr import PromptMRPlus

REPO = Path(__file__).resolve().parents[1]
NARROW = ["model=promptmr_plus_8gb", "model.num_cascades=2", "model.n_feat0=4", "model.feature_dim=[4,6,8]",
          "model.prompt_dim=[2,3,4]", "model.sens_n_feat0=2", "model.sens_feature_dim=[2,3,4]", "model.sens_prompt_dim=[1,2,2]",
          "model.prompt_size=[4,2,2]", "model.n_enc_cab=[1,1,1]", "model.n_dec_cab=[1,1,1]", "model.n_bottleneck_cab=1",
          "model.n_history=1"]


def _run(*args: str, torchrun: int = 0) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"] if torchrun else [sys.executable]
    return subprocess.run([*launcher, *args], cwd=REPO, capture_output=True, text=True, timeout=1800)


def _train(tiny_data: Path, result: Path, name: str, *extra: str, torchrun: int = 0) -> subprocess.CompletedProcess:
    run = _run("final_main.py", "--config-name=demo", "logger.mode=disabled", "data.num_workers=0", "data.synthetic_preset=null",
               f"data.root={tiny_data}", f"result_root={result}", f"exp_name={name}", "training.epochs=1", *NARROW, *extra,
               torchrun=torchrun)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    result = tmp_path_factory.mktemp("promptmr")
    _train(tiny_data, result, "pmr")
    return result


@pytest.mark.slow
def test_promptmr_trains_resumes_and_reconstructs_through_a_manifest(trained, tiny_data):
    checkpoint = load_checkpoint(trained / "pmr" / "checkpoints" / "best_model.pt")
    assert checkpoint["model_config"]["_target_"] == "utils.model.PromptMRPlus" and "acs_lines" not in checkpoint["model_config"]
    _train(tiny_data, trained, "pmr", "training.epochs=2", "training.resume=true")  # the same model config resumes
    manifest = trained / "experts.yaml"
    manifest.write_text("router: rule\nexperts: {brain: pmr/checkpoints/best_model.pt, knee: pmr/checkpoints/best_model.pt}\n")
    out = trained / "recon"
    run = _run("reconstruct_from_ckpt.py", "-c", str(manifest), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "-o", str(out),
               "--no-progress")
    assert run.returncode == 0 and "brain: 2 volumes" in run.stdout, run.stderr[-3000:]
    score = _run("leaderboard_eval.py", "-lp", str(tiny_data / "leaderboard"), "-yp", str(out), "--no-progress")
    assert score.returncode == 0 and 0.3 < float(score.stdout.splitlines()[0].split(":")[1]) <= 1.0, score.stderr


@pytest.mark.slow
def test_promptmr_serves_the_2026_harness(trained, tiny_data):
    model = test_part.load_model(SimpleNamespace(exp_dir=trained / "pmr" / "checkpoints"), torch.device("cpu"))
    assert isinstance(model.network, PromptMRPlus)
    ctx = test_part.prep_volume(None, next((tiny_data / "leaderboard" / "acc4" / "kspace").glob("*.h5")), "cpu")
    image = test_part.recon_slice(model, ctx, 0)
    assert image.shape == (384, 384) and image.dtype == torch.float32 and torch.isfinite(image).all()


@pytest.mark.slow
def test_promptmr_trains_under_torchrun(tiny_data, tmp_path):
    run = _train(tiny_data, tmp_path, "ddp", torchrun=2)
    assert "weights identical on all 2 ranks" in run.stdout + run.stderr
    assert (tmp_path / "ddp" / "checkpoints" / "best_model.pt").is_file()
