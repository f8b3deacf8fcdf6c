"""Exact reproducibility, exact resume after SIGKILL/SIGTERM, the non-finite guard and crash-safe saves.

The runs train with MRAugment and mask augmentation on (probability 0.9 from the first epoch), so every
guarantee below holds for the augmented pipeline too.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import utils.model.checkpoint as checkpoint_module
from tests.conftest import compose_config
from tests.test_training import SMALL_MODEL
from utils.data.dataset import SliceDataset
from utils.data.transforms import to_sample
from utils.errors import UserInputError
from utils.training.trainer import train

pytestmark = pytest.mark.slow  # end-to-end training runs

REPO = Path(__file__).resolve().parents[1]


def _overrides(tiny_data: Path, result_root: Path, exp_name: str, *extra: str) -> list[str]:
    return [
        f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={result_root}", f"exp_name={exp_name}",
        "logger.mode=disabled", "training.epochs=2", "training.grad_accumulation=2", "data.num_workers=0",
        "augment=recipe", "augment.schedule.kind=constant", "augment.schedule.strength=0.9",
        "augment.duplicate_accelerations=null", *SMALL_MODEL, *extra,
    ]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints/model.pt", weights_only=True)["model"]


def _assert_identical_runs(run_a: Path, run_b: Path) -> None:
    for name in ("train_loss_log.npy", "val_loss_log.npy", "val_ssim_log.npy", "val_total_2026_log.npy", "train_step_loss_log.npy"):
        np.testing.assert_array_equal(np.load(run_a / name), np.load(run_b / name), err_msg=name)
    weights_a, weights_b = _weights(run_a), _weights(run_b)
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)


class RandomFlip:
    """A test augmentation: flips k-space along the readout axis with probability 1/2, drawn from ``rng``."""

    def __call__(self, raw, rng):
        kspace = raw.kspace[:, ::-1].copy() if rng.random() < 0.5 else raw.kspace
        return to_sample(raw._replace(kspace=kspace), raw.mask)


def test_random_transforms_draw_the_same_for_any_number_of_workers(tiny_data):
    dataset = SliceDataset(tiny_data / "train", transform=RandomFlip(), seed=5)
    dataset.set_epoch(3)
    loads = []
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=1, num_workers=workers, shuffle=False)
        loads.append([batch.masked_kspace for batch in loader])
    assert all(torch.equal(a, b) for a, b in zip(*loads))
    flipped = [not torch.equal(dataset[i].masked_kspace, SliceDataset(tiny_data / "train")[i].masked_kspace) for i in range(len(dataset))]
    assert any(flipped) and not all(flipped)
    dataset.set_epoch(4)
    assert any(not torch.equal(dataset[i].masked_kspace, loads[0][i][0]) for i in range(len(dataset)))


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory):
    """An uninterrupted run with 2 DataLoader workers and a checkpoint every optimizer step."""
    root = tmp_path_factory.mktemp("reference")
    train(compose_config("demo", _overrides(tiny_data, root, "run", "data.num_workers=2", "training.checkpoint_every_steps=1")), progress=False)
    return root / "run"


def test_same_seed_gives_bit_identical_logs_and_weights(tiny_data, reference_run, tmp_path):
    train(compose_config("demo", _overrides(tiny_data, tmp_path, "again", "data.num_workers=2")), progress=False)
    _assert_identical_runs(reference_run, tmp_path / "again")
    compare = subprocess.run([sys.executable, "-m", "utils.tools.compare_runs", str(reference_run), str(tmp_path / "again")], cwd=REPO, capture_output=True, text=True)
    assert compare.returncode == 0 and "runs are identical" in compare.stdout and "bit-identical" in compare.stdout


def test_compare_runs_reports_the_first_differing_step(tiny_data, reference_run, tmp_path):
    train(compose_config("demo", _overrides(tiny_data, tmp_path, "other", "seed=431", "training.epochs=1")), progress=False)
    compare = subprocess.run([sys.executable, "-m", "utils.tools.compare_runs", str(reference_run), str(tmp_path / "other")], cwd=REPO, capture_output=True, text=True)
    assert compare.returncode == 1 and "runs differ" in compare.stdout
    assert "train_step_loss_log.npy  first differs at step 1:" in compare.stdout


def _start_training(tiny_data: Path, root: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "final_main.py", "--config-name=demo", *_overrides(tiny_data, root, "run", "data.num_workers=2", "training.checkpoint_every_steps=1", *extra)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_checkpoint(process: subprocess.Popen, step: int) -> None:
    for line in process.stdout:
        if f"checkpoint at step {step} " in line:
            return
    raise AssertionError(f"the run ended before step {step}")


@pytest.mark.parametrize("signum,step,exit_code", [(signal.SIGKILL, 5, -signal.SIGKILL), (signal.SIGTERM, 3, 128 + signal.SIGTERM)])
def test_a_killed_run_resumes_to_the_same_weights_and_logs(tiny_data, reference_run, tmp_path, signum, step, exit_code):
    process = _start_training(tiny_data, tmp_path)
    _wait_for_checkpoint(process, step)
    process.send_signal(signum)
    rest = process.communicate(timeout=300)[0]
    assert process.returncode == exit_code, rest[-2000:]
    if signum == signal.SIGTERM:
        assert "resumable checkpoint" in rest
    assert not list((tmp_path / "run").rglob("*.tmp"))
    resumed = subprocess.run(
        [sys.executable, "final_main.py", "--config-name=demo", *_overrides(tiny_data, tmp_path, "run", "data.num_workers=2", "training.checkpoint_every_steps=1", "training.resume=true")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_identical_runs(reference_run, tmp_path / "run")


class NaNOnThirdCall(torch.nn.Module):
    """A loss that is NaN on its third call: stands in for a corrupt slice."""

    calls = 0

    def __init__(self, **loss_options):  # the loss config's options (bbox_weight, area_weight) do not apply
        super().__init__()

    def forward(self, output, target, fg_mask, max_value, box_mask=None):
        NaNOnThirdCall.calls += 1
        loss = (output - target).abs().mean() / max_value.mean()
        return loss * float("nan") if NaNOnThirdCall.calls == 3 else loss


def test_non_finite_loss_skips_the_step_and_never_reaches_a_checkpoint(tiny_data, tmp_path, caplog):
    NaNOnThirdCall.calls = 0
    loss = "loss._target_=tests.test_reproducibility.NaNOnThirdCall"
    state = train(compose_config("demo", _overrides(tiny_data, tmp_path, "nan_skip", "~loss.ssim_weight", "~loss.l1_weight", "~loss.l1_normalisation", loss, "training.epochs=1")), progress=False)
    assert state.skipped_steps == 1 and state.global_step == 4 - 1  # 8 slices, accumulation 2
    assert "non-finite loss on" in caplog.text
    weights = _weights(tmp_path / "nan_skip")
    assert all(torch.isfinite(value).all() for value in weights.values())
    assert np.isfinite(np.load(tmp_path / "nan_skip/train_loss_log.npy")).all()
    NaNOnThirdCall.calls = 0
    with pytest.raises(UserInputError, match="training stopped at step 2"):
        train(compose_config("demo", _overrides(tiny_data, tmp_path, "nan_stop", "~loss.ssim_weight", "~loss.l1_weight", "~loss.l1_normalisation", loss, "training.nonfinite=stop")), progress=False)


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "best_model.pt"
    checkpoint_module.save_checkpoint(path, {"model": {"w": torch.ones(3)}, "model_config": {}})
    before = path.read_bytes()

    def dying_save(obj, target):
        Path(target).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", dying_save)
    with pytest.raises(OSError):
        checkpoint_module.save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "model_config": {}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best_model.pt"]
