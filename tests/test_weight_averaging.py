"""Weight averaging: the EMA kept while training (``training.ema_decay``), the per-epoch weights
(``training.keep_epoch_weights``) and ``python -m utils.tools.average_checkpoints``.

The fast tests check each piece against a hand computation; the slow ones train the tiny preset's knee acc4
files (2 slices, 2 optimizer steps per epoch) and prove that a run SIGKILLed mid-epoch and resumed ends with
the same raw weights, EMA, best model, epoch files and average, bit for bit, as an uninterrupted run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import compose_config
from tests.test_training import SMALL_MODEL
from utils.errors import UserInputError, run_cli
from utils.model.builder import build_model
from utils.model.checkpoint import load_checkpoint, save_checkpoint
from utils.tools import average_checkpoints as tool
from utils.training.build import check_config
from utils.training.checkpoint_policy import DiskSpaceGuard
from utils.training.epoch_weights import epoch_files, remove_epoch_weights, write_epoch_weights
from utils.training.weight_average import WeightEMA, uniform_average

REPO = Path(__file__).resolve().parents[1]


class WithBuffer(nn.Module):
    """A linear layer and a buffer (the networks here have none, but a buffer must be copied, not averaged)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("running", torch.zeros(2))


def _set(module: WithBuffer, value: float) -> None:
    with torch.no_grad():
        for tensor in (*module.parameters(), module.running):
            tensor.fill_(value)


# ---------------------------------------------------------------------------------------------- the EMA

def test_the_ema_follows_its_recurrence_and_copies_buffers():
    network = WithBuffer()
    _set(network, 1.0)
    ema = WeightEMA(network, decay=0.9)
    expected = 1.0
    for value in (2.0, -3.0, 0.5):  # the weights after three optimizer steps
        _set(network, value)
        ema.update(network)
        expected = 0.9 * expected + 0.1 * value
    for parameter in ema.module.parameters():
        np.testing.assert_allclose(parameter.numpy(), expected, rtol=1e-6)
    assert torch.equal(ema.module.running, torch.full((2,), 0.5))  # the latest value, not an average
    assert ema.updates == 3 and not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    ema.reset(network)
    assert ema.updates == 0 and all(torch.equal(p, torch.full_like(p, 0.5)) for p in ema.module.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(network, 1.0)


def test_an_ema_restored_from_a_checkpoint_continues_bit_identically(tmp_path):
    torch.manual_seed(0)
    start = WithBuffer()
    steps = [{name: torch.randn_like(value) for name, value in start.state_dict().items()} for _ in range(6)]

    def train(ema: WeightEMA, weights_after_each_step) -> None:
        network = WithBuffer()
        for weights in weights_after_each_step:
            network.load_state_dict(weights)
            ema.update(network)

    straight = WeightEMA(start, 0.7)
    train(straight, steps)
    interrupted = WeightEMA(start, 0.7)
    train(interrupted, steps[:4])
    save_checkpoint(tmp_path / "model.pt", {"model": start.state_dict(), "model_config": {}, "ema": interrupted.state_dict()})
    resumed = WeightEMA(WithBuffer(), 0.7)  # a new process: other weights until the checkpoint is loaded
    resumed.load_state_dict(load_checkpoint(tmp_path / "model.pt")["ema"])
    train(resumed, steps[4:])
    assert resumed.updates == straight.updates == 6
    assert all(torch.equal(a, b) for a, b in zip(resumed.module.state_dict().values(), straight.module.state_dict().values()))


@pytest.mark.parametrize("model", ["feature_varnet", "promptmr_plus"])
def test_the_ema_averages_every_parameter_of_both_networks(model):
    from tests.test_promptmr_paths import NARROW

    network = build_model(compose_config("demo", SMALL_MODEL if model == "feature_varnet" else NARROW).model)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    ema = WeightEMA(network, 0.75)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(1.0)
    ema.update(network)
    averaged = ema.module.state_dict()
    assert averaged.keys() == before.keys() and len(before) > 50
    for name, value in before.items():  # 0.75 * w + 0.25 * (w + 1)
        torch.testing.assert_close(averaged[name], value + 0.25, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- the uniform average

def test_the_uniform_average_is_the_mean_of_the_parameters_and_keeps_the_newest_buffers():
    rng = np.random.default_rng(0)
    states = [{"w": torch.from_numpy(rng.standard_normal((3, 4)).astype(np.float32)), "running": torch.full((2,), float(k)),
               "count": torch.tensor(k)} for k in range(3)]
    averaged = uniform_average(states, {"w"})
    np.testing.assert_allclose(averaged["w"].numpy(), np.mean([s["w"].numpy().astype(np.float64) for s in states], axis=0), rtol=1e-6)
    assert averaged["w"].dtype == torch.float32
    assert torch.equal(averaged["running"], states[-1]["running"]) and int(averaged["count"]) == 2
    assert uniform_average(states, {"w"})["w"].numpy().tobytes() == averaged["w"].numpy().tobytes()  # deterministic


# ---------------------------------------------------------------------------------------------- per-epoch weights

def _epoch_checkpoint(model_config: dict, weights: dict, epoch: int) -> dict:
    return {"model": weights, "weights": "raw", "epoch": epoch + 1, "model_config": model_config, "config": None}


def test_epoch_weights_rotate_to_the_last_n_and_a_fresh_run_clears_them(tmp_path):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder / "epoch9.pt", {"model": {}, "model_config": {}})  # left by an overwritten, longer run
    for epoch in range(4):
        write_epoch_weights(folder, epoch, {"model": {"w": torch.full((2,), float(epoch))}, "model_config": {}}, 2, DiskSpaceGuard())
        kept = sorted(epoch_files(folder))
        assert kept == list(range(max(0, epoch - 1), epoch + 1))  # the newest two, never the stale epoch9
    assert float(load_checkpoint(folder / "epoch3.pt")["model"]["w"][0]) == 3.0
    assert not list(folder.glob(".*.tmp"))
    (folder / "epoch_notes.pt").write_bytes(b"x")  # not an epoch file: never touched
    remove_epoch_weights(folder)
    assert epoch_files(folder) == {} and (folder / "epoch_notes.pt").exists()


def test_weight_averaging_config_values_are_checked():
    check_config(compose_config("demo", ["training.ema_decay=0.999", "training.keep_epoch_weights=3"]))
    for override, key in (("training.ema_decay=1.0", "training.ema_decay"), ("training.ema_decay=-0.1", "training.ema_decay"),
                          ("training.ema_decay=true", "training.ema_decay"), ("training.keep_epoch_weights=-1", "training.keep_epoch_weights"),
                          ("training.keep_epoch_weights=1.5", "training.keep_epoch_weights")):
        with pytest.raises(UserInputError, match=key) as error:
            check_config(compose_config("demo", [override]))
        assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------- average_checkpoints

@pytest.fixture
def epoch_run(tmp_path) -> tuple[Path, dict, list[dict]]:
    """A run folder with epoch0.pt .. epoch2.pt of the small FeatureVarNet, each its weights plus k."""
    cfg = compose_config("demo", SMALL_MODEL)
    model_config = OmegaConf.to_container(cfg.model, resolve=True)
    base = build_model(cfg.model).state_dict()
    states = [{name: value + k for name, value in base.items()} for k in range(3)]
    for k, state in enumerate(states):
        save_checkpoint(tmp_path / "run" / "checkpoints" / f"epoch{k}.pt", _epoch_checkpoint(model_config, state, k))
    return tmp_path / "run", model_config, states


def _tool(*args: str) -> tuple[int, str]:
    """``average_checkpoints`` in this process, as ``run_cli`` runs it: (exit status, stderr is captured by pytest)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main, list(args))
    return exit_info.value.code


def test_average_checkpoints_writes_a_normal_checkpoint_of_the_mean(epoch_run, tmp_path, capsys):
    run, model_config, states = epoch_run
    out = tmp_path / "averaged.pt"
    assert _tool(str(run), "--last", "2", "--out", str(out)) == 0
    assert "averaged the weights of epochs 1, 2" in capsys.readouterr().out
    checkpoint = load_checkpoint(out)
    for name, value in checkpoint["model"].items():  # the mean of (w + 1) and (w + 2)
        torch.testing.assert_close(value, states[0][name] + 1.5, rtol=0, atol=1e-5)
    origin = checkpoint["origin"]
    assert origin["averaged"] == "uniform" and origin["epochs"] == [1, 2] and len(origin["files"]) == 2
    assert all(len(entry["sha256"]) == 64 for entry in origin["files"]) and checkpoint["model_config"] == model_config
    from utils.inference.load import load_reconstructor  # what reconstruct_from_ckpt.py and the 2026 harness load

    network = load_reconstructor(out, torch.device("cpu")).network
    assert all(torch.equal(network.state_dict()[name], value) for name, value in checkpoint["model"].items())


def test_an_averaged_checkpoint_initialises_training_and_serves_the_2026_harness(epoch_run, tmp_path):
    from utils.learning import test_part
    from utils.training.resume import start_state

    run, _, _ = epoch_run
    out = tmp_path / "harness" / "best_model.pt"
    tool.average_checkpoints(run, 3, out)
    cfg = compose_config("demo", [*SMALL_MODEL, f"training.init_from={out}", f"result_root={tmp_path}", "exp_name=init"])
    model = build_model(cfg.model)
    ema = WeightEMA(model, 0.9)
    state = start_state(cfg, tmp_path / "init" / "checkpoints", model, None, None, None, None, _one_process(), ema)
    averaged = load_checkpoint(out)["model"]
    assert state.init_from["origin"]["epochs"] == [0, 1, 2]
    assert all(torch.equal(model.state_dict()[name], value) for name, value in averaged.items())
    assert all(torch.equal(ema.module.state_dict()[name], value) for name, value in averaged.items())  # the EMA starts there
    served = test_part.load_model(SimpleNamespace(exp_dir=out.parent), torch.device("cpu"))
    assert all(torch.equal(served.network.state_dict()[name], value) for name, value in averaged.items())


def _one_process():
    from utils.distributed import Distributed

    return Distributed()


def test_average_checkpoints_errors_are_one_line_and_write_nothing(epoch_run, tmp_path, capsys):
    run, model_config, states = epoch_run
    out = tmp_path / "out.pt"
    other = tmp_path / "other"
    save_checkpoint(other / "checkpoints" / "epoch0.pt", _epoch_checkpoint(model_config, states[0], 0))
    wider = {**model_config, "feature_chans": 6}
    save_checkpoint(other / "checkpoints" / "epoch1.pt", _epoch_checkpoint(wider, build_model(wider).state_dict(), 1))
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"keep me")
    cases = [
        ((str(tmp_path / "missing"), "--last", "2", "--out", str(out)), "run folder not found"),
        ((str(run), "--last", "4", "--out", str(out)), "holds the weights of 3 epoch(s) (epoch0.pt, epoch1.pt, epoch2.pt), --last 4 needs 4"),
        ((str(other), "--last", "2", "--out", str(out)), "epoch1.pt: has another model config than epoch0.pt"),
        ((str(run), "--last", "2", "--out", str(existing)), "existing.pt: already exists"),
        ((str(run), "--last", "0", "--out", str(out)), "--last must be at least 1"),
        ((str(run), "--last", "two", "--out", str(out)), "--last: invalid int value"),
    ]
    for args, message in cases:
        assert _tool(*args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists() and existing.read_bytes() == b"keep me"
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------- end to end

KNEE_ACC4 = ("data.subset.anatomy=knee", "data.subset.acceleration=4", "data.subset.include_other_acceleration=false")


def _overrides(tiny_data: Path, root: Path, exp_name: str, *extra: str) -> list[str]:
    """2 epochs of 2 optimizer steps (the 2 knee acc4 train slices), with MRAugment on, an EMA, the last two
    epochs' weights kept and a checkpoint after every step."""
    return [
        f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={root}", f"exp_name={exp_name}", "logger.mode=disabled",
        "data.num_workers=0", "training.epochs=2", "training.grad_accumulation=1", "training.figures=false",
        "training.checkpoint_every_steps=1", "training.ema_decay=0.5", "training.keep_epoch_weights=2",
        "augment=recipe", "augment.schedule.kind=constant", "augment.schedule.strength=0.9", "augment.duplicate_accelerations=null",
        *KNEE_ACC4, *SMALL_MODEL, *extra,
    ]


def _equal_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.fixture(scope="module")
def straight_and_resumed(tiny_data, tmp_path_factory) -> tuple[Path, Path]:
    """The same run twice: uninterrupted (in this process), and SIGKILLed after step 3 of 4 (mid epoch 1,
    after that step's checkpoint; the trainer's test hook) then resumed with training.resume=true."""
    from utils.training.trainer import train

    root = tmp_path_factory.mktemp("weight_averaging")
    train(compose_config("demo", _overrides(tiny_data, root, "straight")), progress=False)
    command = [sys.executable, "final_main.py", "--config-name=demo", *_overrides(tiny_data, root, "resumed")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**env, "MRI_TEST_KILL_AT_STEP": "3"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert sorted(epoch_files(root / "resumed" / "checkpoints")) == [0]  # epoch 1 had not ended
    resumed = subprocess.run([*command, "training.resume=true"], cwd=REPO, capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root / "straight", root / "resumed"


@pytest.mark.slow
def test_ema_and_epoch_weights_are_exact_across_a_kill_and_resume(straight_and_resumed, tmp_path):
    straight, resumed = straight_and_resumed
    for name in ("train_step_loss_log.npy", "train_loss_log.npy", "val_loss_log.npy", "val_ssim_log.npy"):
        np.testing.assert_array_equal(np.load(straight / name), np.load(resumed / name), err_msg=name)
    last = [load_checkpoint(run / "checkpoints/model.pt") for run in (straight, resumed)]
    assert _equal_weights(last[0]["model"], last[1]["model"]) and last[0]["weights"] == "raw"
    assert _equal_weights(last[0]["ema"]["model"], last[1]["ema"]["model"])
    assert last[0]["ema"]["updates"] == last[1]["ema"]["updates"] == 4 and last[0]["ema"]["decay"] == 0.5
    assert not _equal_weights(last[0]["model"], last[0]["ema"]["model"])  # the EMA is not the raw weights
    best = [load_checkpoint(run / "checkpoints/best_model.pt") for run in (straight, resumed)]
    assert best[0]["weights"] == "ema" and _equal_weights(best[0]["model"], best[0]["ema"]["model"])
    assert _equal_weights(best[0]["model"], best[1]["model"])
    for run in (straight, resumed):
        assert sorted(epoch_files(run / "checkpoints")) == [0, 1]
    for epoch in (0, 1):
        weights = [load_checkpoint(run / f"checkpoints/epoch{epoch}.pt") for run in (straight, resumed)]
        assert _equal_weights(weights[0]["model"], weights[1]["model"]) and weights[0]["epoch"] == epoch + 1
    assert _equal_weights(load_checkpoint(straight / "checkpoints/epoch1.pt")["model"], last[0]["model"])  # raw weights
    averages = [tool.average_checkpoints(run, 2, tmp_path / f"{run.name}.pt")["model"] for run in (straight, resumed)]
    assert _equal_weights(averages[0], averages[1])


@pytest.mark.slow
def test_validation_scores_the_ema_weights(straight_and_resumed, tiny_data):
    from utils.inference.reconstruct import volume_loader
    from utils.model.checkpoint import model_from_checkpoint
    from utils.training.build import build_datasets, build_loss
    from utils.training.validate import validate

    straight, _ = straight_and_resumed
    cfg = compose_config("demo", _overrides(tiny_data, straight.parent, "straight"))
    loader = volume_loader(build_datasets(cfg, tiny_data)[1], 1, 0)
    checkpoint = load_checkpoint(straight / "checkpoints/model.pt")
    scores = {}
    for weights in ("ema", "raw"):
        network = model_from_checkpoint({**checkpoint, "model": checkpoint["ema"]["model"] if weights == "ema" else checkpoint["model"]}, "model.pt")
        scores[weights] = validate(network, loader, build_loss(cfg.loss), torch.device("cpu"), progress=False).ssim
    logged = float(np.load(straight / "val_ssim_log.npy")[-1, 1])
    assert scores["ema"] == pytest.approx(logged, abs=1e-7) and scores["raw"] != pytest.approx(logged, abs=1e-7)


@pytest.mark.slow
def test_an_averaged_checkpoint_reconstructs_with_reconstruct_from_ckpt(straight_and_resumed, tiny_data, tmp_path):
    straight, _ = straight_and_resumed
    averaged = tmp_path / "averaged.pt"
    made = subprocess.run([sys.executable, "-m", "utils.tools.average_checkpoints", str(straight), "--last", "2", "--out", str(averaged)],
                          cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0 and "averaged the weights of epochs 0, 1" in made.stdout, made.stderr
    out = tmp_path / "recon"
    recon = subprocess.run([sys.executable, "reconstruct_from_ckpt.py", "-c", str(averaged), "-p", str(tiny_data / "leaderboard"), "-g", "-1",
                            "-o", str(out), "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert recon.returncode == 0, recon.stderr[-3000:]
    assert sorted(path.name for path in out.rglob("*.h5")) == sorted(path.name for path in (tiny_data / "leaderboard").rglob("kspace/*.h5"))


@pytest.mark.slow
def test_promptmr_keeps_the_same_ema_on_every_rank_under_torchrun(tiny_data, tmp_path):
    from tests.test_promptmr_paths import NARROW

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "final_main.py", "--config-name=demo",
               f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={tmp_path}", "exp_name=ddp", "logger.mode=disabled",
               "data.num_workers=0", "training.epochs=1", "training.figures=false", "training.ema_decay=0.9", "training.keep_epoch_weights=1",
               *KNEE_ACC4, *NARROW]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "weights identical on all 2 ranks" in output and "EMA weights identical on all 2 ranks" in output
    checkpoint = load_checkpoint(tmp_path / "ddp/checkpoints/model.pt")
    assert checkpoint["ema"]["updates"] == checkpoint["global_step"] == 1  # 2 slices, one per rank: one step
    assert load_checkpoint(tmp_path / "ddp/checkpoints/best_model.pt")["weights"] == "ema"
    assert sorted(epoch_files(tmp_path / "ddp/checkpoints")) == [0]
