"""The training recipe's parts: optimizers, LR schedules, AMP, early stopping, train+val, augmentation end to end."""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.test_model_network import equispaced_mask
from tests.test_training import SMALL_MODEL, _run
from utils.data.transforms import Sample
from utils.errors import UserInputError
from utils.model.checkpoint import load_checkpoint
from utils.model.feature_varnet import FeatureVarNet
from utils.training.build import build_datasets, build_optimizer, build_scheduler, check_config
from utils.training.interrupt import StopOnSignal
from utils.training.loop import AMP_DTYPES, TrainState, make_grad_scaler, train_one_epoch
from utils.training.losses import MaskedSSIML1Loss
from utils.training.trainer import train

REPO = Path(__file__).resolve().parents[1]


def _tiny_overrides(tiny_data: Path, result_root: Path, exp_name: str, *extra: str) -> list[str]:
    return [
        f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={result_root}", f"exp_name={exp_name}",
        "logger.mode=disabled", "data.num_workers=0", *SMALL_MODEL, *extra,
    ]


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("nadam", torch.optim.NAdam), ("radam", torch.optim.RAdam)])
def test_every_optimizer_config_builds_with_the_configured_lr(name, cls):
    cfg = compose_config("demo", [f"optimizer={name}", "optimizer.lr=2e-4"])
    optimizer = build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2).parameters())
    assert type(optimizer) is cls and optimizer.param_groups[0]["lr"] == 2e-4


def _lrs(scheduler_name: str, epochs: int, steps_per_epoch: int, overrides=()) -> tuple[list[float], str]:
    cfg = compose_config("demo", [f"scheduler={scheduler_name}", "optimizer.lr=1e-3", *overrides])
    optimizer = build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2).parameters())
    scheduler, interval = build_scheduler(cfg.scheduler, optimizer, epochs, steps_per_epoch)
    lrs = []
    for _ in range(epochs * (steps_per_epoch if interval == "step" else 1)):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs, interval


def test_schedules_step_at_their_granularity_and_span_the_whole_run():
    lrs, interval = _lrs("exponential", 3, 7)
    assert interval == "epoch" and lrs == pytest.approx([1e-3, 0.96e-3, 0.96**2 * 1e-3])
    lrs, interval = _lrs("step", 25, 7)
    assert interval == "epoch" and lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(5e-4) and lrs[20] == pytest.approx(2.5e-4)
    lrs, interval = _lrs("cosine_warmup", 4, 25, ["scheduler.warmup_steps=10", "scheduler.min_lr_ratio=0.01"])
    assert interval == "step" and len(lrs) == 100
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    assert all(np.diff(lrs[10:]) <= 0) and lrs[-1] == pytest.approx(1e-5, rel=0.1)
    lrs, interval = _lrs("onecycle", 4, 25)  # stepping past total_steps would raise: the length is right
    assert interval == "step" and max(lrs) == pytest.approx(1e-3, rel=1e-3)  # max_lr is optimizer.lr
    assert lrs[0] == pytest.approx(1e-3 / 25) and int(np.argmax(lrs)) == pytest.approx(30, abs=1)


def test_plateau_schedule_lowers_the_lr_when_validation_ssim_stalls():
    cfg = compose_config("demo", ["scheduler=plateau", "scheduler.patience=1"])
    optimizer = build_optimizer(cfg.optimizer, torch.nn.Linear(2, 2).parameters())
    scheduler, _ = build_scheduler(cfg.scheduler, optimizer, 10, 5)
    for ssim in (0.80, 0.85, 0.85, 0.85):
        scheduler.step(ssim)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr * cfg.scheduler.factor)


@pytest.mark.parametrize("amp", ("fp16", "bf16"))
def test_amp_training_step_on_zero_padded_knee_like_data_is_finite(amp):
    torch.manual_seed(0)
    model = FeatureVarNet((1, 1, 1), feature_chans=4, unet_chans=4, pools=2, sens_chans=2, sens_pools=2, image_chans=4, image_pools=2)
    coils, height, width = 4, 64, 48
    mask = equispaced_mask(width, 4, 8)
    kspace = 1e-4 * torch.randn(1, coils, height, width, 2) * mask
    kspace[..., :6, :] = 0  # zero-padded outer columns, as in knee k-space
    kspace[..., -6:, :] = 0
    target = torch.rand(1, 384, 384) * 1e-4
    fg_mask = torch.zeros(1, 384, 384)
    fg_mask[:, 100:300, 150:250] = 1
    scaler = make_grad_scaler(amp, torch.device("cpu"))
    assert scaler.is_enabled() == (amp == "fp16")
    with torch.autocast("cpu", dtype=AMP_DTYPES[amp]):
        output = model(kspace, mask)
    assert output.dtype == torch.float32
    loss = MaskedSSIML1Loss()(output, target, fg_mask, torch.tensor([1e-4], dtype=torch.float64))
    scaler.scale(loss).backward()
    scaler.unscale_(torch.optim.Adam(model.parameters()))
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def _small_batches(count: int) -> list[Sample]:
    generator = torch.Generator().manual_seed(0)
    mask = equispaced_mask(48, 4, 8)
    batches = []
    for index in range(count):
        kspace = 1e-4 * torch.randn(1, 3, 64, 48, 2, generator=generator) * mask
        target = torch.zeros(1, 384, 384)
        target[:, 160:224, 168:216] = 1e-4 * torch.rand(1, 64, 48, generator=generator)
        fg_mask = (target > 0).float()
        batches.append(Sample(kspace, mask[0][None], target, fg_mask, torch.tensor([1e-4], dtype=torch.float64),
                              ["knee_acc4_1.h5"], torch.tensor([index]), ["knee"], torch.tensor([4])))
    return batches


def test_fp16_training_loop_scales_the_loss_steps_and_keeps_the_scaler_state():
    torch.manual_seed(0)
    model = FeatureVarNet((1, 0, 1), feature_chans=4, unet_chans=4, pools=2, sens_chans=2, sens_pools=2, image_chans=4, image_pools=2)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = make_grad_scaler("fp16", torch.device("cpu"))
    settings = OmegaConf.create({"grad_accumulation": 2, "epochs": 1, "grad_clip": 1.0, "nonfinite": "stop", "amp": "fp16"})
    state, steps = TrainState(), []
    with StopOnSignal() as stop:
        loss = train_one_epoch(model, _small_batches(4), 4, MaskedSSIML1Loss(), optimizer, steps.append, state, settings,
                               torch.device("cpu"), stop, progress=False, scaler=scaler)
    assert math.isfinite(loss) and len(steps) == 2 and state.global_step + state.skipped_steps == 2
    assert state.global_step >= 1 and scaler.get_scale() > 0  # overflow steps (if any) lower the scale, never stop
    assert any(not torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert scaler.state_dict()["scale"] == scaler.get_scale()  # what a checkpoint stores


def test_recipe_values_are_checked():
    with pytest.raises(UserInputError, match="training.amp"):
        check_config(compose_config("demo", ["training.amp=fp8"]))
    with pytest.raises(UserInputError, match="select_best_by"):
        check_config(compose_config("demo", ["training.train_on_train_and_val=true"]))
    with pytest.raises(UserInputError, match="scheduler"):
        check_config(compose_config("demo", ["training.train_on_train_and_val=true", "training.select_best_by=train_loss", "scheduler=plateau"]))


@pytest.mark.slow
def test_train_on_train_and_val_reads_both_splits_and_never_validates(tiny_data, tmp_path):
    cfg = compose_config("demo", _tiny_overrides(tiny_data, tmp_path, "both", "training.train_on_train_and_val=true", "training.select_best_by=train_loss", "training.epochs=1"))
    train_set, val_set = build_datasets(cfg, tiny_data)
    assert len(train_set) == len(build_datasets(compose_config("demo", _tiny_overrides(tiny_data, tmp_path, "x")), tiny_data)[0]) + len(val_set)
    state = train(cfg, progress=False)
    assert state.val_ssim_log == [] and np.load(tmp_path / "both" / "val_loss_log.npy").size == 0
    assert load_checkpoint(tmp_path / "both/checkpoints/best_model.pt")["select_best_by"] == "train_loss"


@pytest.mark.slow
def test_early_stopping_ends_the_run_when_validation_stalls(tiny_data, tmp_path):
    cfg = compose_config("demo", _tiny_overrides(
        tiny_data, tmp_path, "stall", "training.epochs=5", "optimizer.lr=1e-9",
        "training.early_stopping_patience=1", "training.early_stopping_min_delta=0.01", "training.save_val_reconstructions=true",
    ))
    state = train(cfg, progress=False)
    assert [epoch for epoch, _ in state.train_loss_log] == [0.0, 1.0]  # epoch 1 did not improve: stop
    written = sorted((tmp_path / "stall/reconstructions_val").glob("*.h5"))
    assert [p.name for p in written] == sorted(p.name for p in (tiny_data / "val/image").glob("*.h5"))
    with h5py.File(written[0], "r") as recon, h5py.File(tiny_data / "val/image" / written[0].name, "r") as target:
        assert recon["reconstruction"].shape == target["image_label"].shape and recon["reconstruction"].dtype == np.float32
    checkpoint = load_checkpoint(tmp_path / "stall/checkpoints/model.pt")
    assert checkpoint["validations_since_best"] == 1
    assert checkpoint["layout"] == {"world_size": 1, "batch_size": 1, "grad_accumulation": 1}
    resume_differently = compose_config("demo", _tiny_overrides(tiny_data, tmp_path, "stall", "training.resume=true", "training.grad_accumulation=2"))
    with pytest.raises(UserInputError, match="same number of processes, data.batch_size and training.grad_accumulation"):
        train(resume_differently, progress=False)


@pytest.mark.slow
def test_full_recipe_trains_reconstructs_and_scores_on_generated_data(tiny_data, tmp_path):
    """Augmentation, duplication, GCC, OneCycle per step and accumulation in one CLI run (AMP has its own tests:
    on a CPU without half-precision units autocast is several times slower than float32)."""
    run = _run(
        "final_main.py", "--config-name=demo", *_tiny_overrides(tiny_data, tmp_path, "recipe"),
        "augment=recipe", "augment.schedule.kind=constant", "augment.schedule.strength=0.9",
        "compressor=gcc", "compressor.num_coils=3", "scheduler=onecycle",
        "training.grad_accumulation=3", "training.epochs=1",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "recipe/checkpoints/model.pt")
    assert checkpoint["augment"] == {"epoch": 0, "probability": 0.9}  # the last epoch trained
    assert checkpoint["global_step"] == math.ceil(2 * 8 / 3)  # 8 tiny slices, duplicated, accumulation 3
    assert checkpoint["config"]["compressor"]["method"] == "gcc"
    out = tmp_path / "recon"
    recon = _run("reconstruct_from_ckpt.py", "-c", str(tmp_path / "recipe/checkpoints/best_model.pt"), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "-o", str(out), "--no-progress")
    assert recon.returncode == 0, recon.stderr
    score = _run("leaderboard_eval.py", "-lp", str(tiny_data / "leaderboard"), "-yp", str(out), "--no-progress")
    assert score.returncode == 0 and 0.3 < float(score.stdout.splitlines()[0].split(":")[1]) < 1.0
