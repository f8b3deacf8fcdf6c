"""Training, checkpoints and reconstruction end to end on the tiny synthetic preset."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import compose_config
from utils.errors import UserInputError
from utils.evaluation.official_reference import official_folder_ssim
from utils.model.builder import build_model
from utils.model.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from utils.training.build import build_loss, build_optimizer, build_scheduler, check_config
from utils.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
# a FeatureVarNet with every stage and very few channels: seconds per epoch on the tiny preset
SMALL_MODEL = [
    "model.cascade_counts=[1,1,1]", "model.feature_chans=4", "model.unet_chans=4", "model.pools=2",
    "model.sens_chans=2", "model.sens_pools=2", "model.image_chans=4", "model.image_pools=2",
]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("config_name", TOP_LEVEL_CONFIGS)
def test_every_top_level_config_composes_and_builds(config_name):
    cfg = compose_config(config_name)
    check_config(cfg)
    model = build_model(cfg.model)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    scheduler, interval = build_scheduler(cfg.scheduler, optimizer)
    assert interval in ("epoch", "step") and build_loss(cfg.loss) is not None
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
    for key in ("exp_name", "result_root", "seed", "data.root", "training.epochs", "optimizer.lr", "logger.mode"):
        assert cfg.get(key.split(".")[0]) is not None, key


def test_final_recipe_is_the_entrys():
    cfg = compose_config("train_vessl_final")
    assert list(cfg.model.cascade_counts) == [5, 10, 3] and cfg.model.checkpointing
    assert cfg.optimizer._target_ == "torch.optim.NAdam" and cfg.optimizer.lr == 1e-3
    assert cfg.scheduler.gamma == 0.96 and cfg.training.epochs == 39 and cfg.training.grad_accumulation == 10
    assert cfg.seed == 430 and cfg.data.batch_size == 1 and cfg.training.select_best_by == "val_ssim"


@pytest.mark.parametrize(
    "override,key",
    [
        ("training.epochs=0", "training.epochs"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("logger.mode=sometimes", "logger.mode"),
        ("training.select_best_by=val_psnr", "training.select_best_by"),
        ("data.batch_size=0", "data.batch_size"),
    ],
)
def test_bad_config_values_are_one_clear_error(override, key):
    with pytest.raises(UserInputError, match=key):
        check_config(compose_config("demo", [override]))


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory):
    """Two epochs of final_main.py on the tiny preset, with lr 5e-4 set on the command line."""
    result_root = tmp_path_factory.mktemp("result")
    run = _run(
        "final_main.py", "--config-name=demo", f"data.root={tiny_data}", "data.synthetic_preset=null",
        f"result_root={result_root}", "exp_name=tiny", "training.epochs=2", "logger.mode=disabled",
        "data.num_workers=0", "optimizer.lr=5e-4", *SMALL_MODEL,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return result_root / "tiny"


@pytest.mark.slow
def test_training_writes_the_seed_layout(trained_run):
    for name in ("checkpoints/model.pt", "checkpoints/best_model.pt", "train_loss_log.npy", "val_loss_log.npy", "val_ssim_log.npy"):
        assert (trained_run / name).is_file(), name
    assert list(trained_run.glob("hydra/*/final_main.log"))
    train_log, val_log = np.load(trained_run / "train_loss_log.npy"), np.load(trained_run / "val_loss_log.npy")
    assert train_log.shape == val_log.shape == (2, 2)
    assert train_log[:, 0].tolist() == [0.0, 1.0] and np.isfinite(train_log).all() and (train_log[:, 1] > 0).all()
    total_2026 = np.load(trained_run / "val_total_2026_log.npy")  # 0.5 SSIM_full + 0.5 SSIM_bbox of every validation
    assert total_2026.shape == (2, 2) and ((0 < total_2026[:, 1]) & (total_2026[:, 1] < 1)).all()
    text_log = next(trained_run.glob("hydra/*/final_main.log")).read_text()
    assert "val/ssim_bbox " in text_log and "val/total_2026 " in text_log and "val/boxes " in text_log
    assert not list(trained_run.rglob("*.tmp"))


@pytest.mark.slow
def test_the_best_model_can_be_selected_by_the_2026_total(tiny_data, tmp_path):
    state = train(compose_config("demo", [f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={tmp_path}",
                                          "exp_name=by2026", "training.epochs=2", "logger.mode=disabled", "data.num_workers=0",
                                          "training.select_best_by=val_total_2026", "loss.bbox_weight=1.0", *SMALL_MODEL]), progress=False)
    totals = np.load(tmp_path / "by2026" / "val_total_2026_log.npy")
    assert state.best_metric == pytest.approx(totals[:, 1].max()) and state.best_epoch == int(totals[totals[:, 1].argmax(), 0])
    assert load_checkpoint(tmp_path / "by2026" / "checkpoints" / "best_model.pt")["best_epoch"] == state.best_epoch


@pytest.mark.slow
def test_checkpoint_holds_plain_data_and_the_chosen_lr(trained_run):
    checkpoint = torch.load(trained_run / "checkpoints/model.pt", weights_only=True)
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["epoch"] == 2
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "best_metric", "best_epoch", "train_loss_log", "val_loss_log", "rng", "config", "model_config"):
        assert key in checkpoint, key
    assert checkpoint["global_step"] == 2 * 8  # 8 tiny train slices, batch 1, no accumulation
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 5e-4  # the lr typed on the command line
    assert checkpoint["config"]["optimizer"]["lr"] == 5e-4 and checkpoint["model_config"]["feature_chans"] == 4
    assert set(checkpoint["rng"]) >= {"python", "numpy", "torch"}
    np.testing.assert_allclose(np.load(trained_run / "train_loss_log.npy").tolist(), checkpoint["train_loss_log"])


@pytest.mark.slow
def test_best_model_is_chosen_by_validation_ssim(trained_run):
    best = load_checkpoint(trained_run / "checkpoints/best_model.pt")
    val_ssim = np.load(trained_run / "val_ssim_log.npy")
    assert best["best_epoch"] == int(val_ssim[np.argmax(val_ssim[:, 1]), 0])
    assert best["epoch"] == best["best_epoch"] + 1 and best["best_metric"] == pytest.approx(val_ssim[:, 1].max())


@pytest.mark.slow
def test_a_second_run_never_overwrites_the_first(trained_run, tiny_data):
    cfg = compose_config("demo", [f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={trained_run.parent}", "exp_name=tiny", "logger.mode=disabled", *SMALL_MODEL])
    before = (trained_run / "checkpoints/model.pt").stat().st_mtime_ns
    with pytest.raises(UserInputError, match="training.resume=true"):
        train(cfg, progress=False)
    assert (trained_run / "checkpoints/model.pt").stat().st_mtime_ns == before


@pytest.mark.slow
def test_reconstruct_and_score_end_to_end(trained_run, tiny_data, tmp_path):
    out = tmp_path / "recon"
    run = _run("reconstruct_from_ckpt.py", "-c", str(trained_run / "checkpoints/best_model.pt"), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "-b", "2", "-o", str(out), "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "within the 3600 s budget: yes" in run.stdout and "load: " in run.stdout
    # 8 tiny leaderboard slices in batches of 2: 3 batches (6 slices) warm up, the last batch is timed
    assert "ms/slice over 2 slices after 6 untimed warm-up slices (2026 harness convention, batch 2)" in run.stdout
    timing = json.loads((out / "timing.json").read_text())  # what leaderboard_eval.py --edition 2026 reads
    assert timing["ms_per_slice"] > 0 and (timing["timed_slices"], timing["warmup_slices"], timing["batch_size"]) == (2, 6, 2)
    score = _run("leaderboard_eval.py", "--edition", "2026", "-lp", str(tiny_data / "leaderboard"), "-yp", str(out), "--no-progress")
    assert score.returncode == 0 and "measured at batch 2, not the harness's batch 1" in score.stdout, score.stderr
    for acc in ("acc4", "acc8"):
        targets = sorted(p.name for p in (tiny_data / "leaderboard" / acc / "image").glob("*.h5"))
        assert sorted(p.name for p in (out / acc).glob("*.h5")) == targets
        for name in targets:
            with h5py.File(out / acc / name, "r") as recon, h5py.File(tiny_data / "leaderboard" / acc / "image" / name, "r") as target:
                assert list(recon.keys()) == ["reconstruction"]
                assert recon["reconstruction"].dtype == np.float32 and recon["reconstruction"].shape == target["image_label"].shape
        assert len(official_folder_ssim(tiny_data / "leaderboard" / acc / "image", out / acc, targets)) == 4
    score = _run("leaderboard_eval.py", "-lp", str(tiny_data / "leaderboard"), "-yp", str(out), "--no-progress")
    assert score.returncode == 0 and score.stdout.startswith("Leaderboard SSIM : ")
    assert 0.3 < float(score.stdout.splitlines()[0].split(":")[1]) < 1.0


@pytest.mark.slow
def test_reconstruct_uses_the_checkpoint_given_by_c(trained_run, tiny_data, tmp_path):
    checkpoint = load_checkpoint(trained_run / "checkpoints/best_model.pt")
    checkpoint["model"] = {key: torch.zeros_like(value) if key.endswith("dc_weight") else value for key, value in checkpoint["model"].items()}
    altered = tmp_path / "altered.pt"
    save_checkpoint(altered, {k: v for k, v in checkpoint.items() if k != "format"})
    outputs = {}
    for name, path in (("best", trained_run / "checkpoints/best_model.pt"), ("altered", altered)):
        run = _run("reconstruct_from_ckpt.py", "-c", str(path), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "-o", str(tmp_path / name), "--no-progress")
        assert run.returncode == 0, run.stderr
        assert f"checkpoint {path}" in run.stdout
        with h5py.File(tmp_path / name / "acc4" / "brain_test1.h5", "r") as handle:
            outputs[name] = handle["reconstruction"][()]
    assert not np.allclose(outputs["best"], outputs["altered"])


@pytest.mark.slow
def test_reconstruct_defaults_to_the_checkpoints_run_folder(trained_run, tiny_data):
    run = _run("reconstruct_from_ckpt.py", "-c", str(trained_run / "checkpoints/model.pt"), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert len(list((trained_run / "reconstructions_leaderboard" / "acc8").glob("*.h5"))) == 2


def test_checkpoints_that_are_not_ours_are_refused(tmp_path):
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}, "model_config": {}, "args": Path("/x")}, pickled)
    with pytest.raises(UserInputError, match="holds the object pathlib.PosixPath, .*refusing to unpickle it"):
        load_checkpoint(pickled)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserInputError, match="not a checkpoint of this repository"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(UserInputError, match="truncated or corrupt"):
        load_checkpoint(truncated)


def test_wandb_offline_logs_locally_without_prompting(tmp_path, monkeypatch):
    from utils.training.logger import RunLogger

    monkeypatch.setenv("HOME", str(tmp_path))  # no netrc, no cached login
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))
    logger = RunLogger(tmp_path, "offline", "test-project", "run", {"seed": 1})
    logger.log({"train/loss": 0.5}, step=0)
    logger.log_images([("slice", np.zeros((8, 16)))], step=0)
    logger.finish()
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_wandb_online_without_credentials_is_refused_not_prompted(tmp_path, monkeypatch):
    from utils.training.logger import RunLogger

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(UserInputError, match="logger.mode=offline"):
        RunLogger(tmp_path, "online", "test-project", "run", {})


class _FailingRun:
    """A W&B run whose service died: every log raises; counts the calls."""

    def __init__(self):
        self.logged, self.finished = 0, []

    def log(self, entries, step):
        self.logged += 1
        raise BrokenPipeError("the wandb service is gone")

    def finish(self, exit_code=None):
        self.finished.append(exit_code)


def test_a_wandb_failure_turns_wandb_off_with_one_warning_and_never_raises(tmp_path, caplog):
    from utils.training.logger import RunLogger

    logger = RunLogger(tmp_path, "disabled", "p", "r", {})
    logger.run = failing = _FailingRun()  # as if wandb.init had worked and the service died later
    with caplog.at_level(logging.INFO, logger="train"):
        logger.log({"train/loss": 0.5}, step=3)  # rank 0 alone logs: raising here would leave other ranks waiting
        logger.log({"train/loss": 0.4}, step=4)
        logger.log_figures({"figures/curves": None}, step=4)
        logger.finish()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "epoch 3" in warnings[0] and "BrokenPipeError: the wandb service is gone" in warnings[0]
    assert failing.logged == 1 and failing.finished == [1]  # closed once, marked failed; later calls no-ops
    assert sum("train/loss 0.4" in r.getMessage() for r in caplog.records) == 1  # the text log goes on
