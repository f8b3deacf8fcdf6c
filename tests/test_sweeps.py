"""Sweeps: Hydra multirun job folders, failing jobs, run records, summarize_runs and the W&B sweep example."""
from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.test_training import SMALL_MODEL
from utils.errors import UserInputError
from utils.model.checkpoint import save_checkpoint
from utils.tools import summarize_runs
from utils.training.build import check_command_line, check_config
from utils.training.logger import write_history
from utils.training.sweep import RUN_RECORD, Invocation, SweepJobs, job_config, sweep_job_name, sweep_naming_overrides

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
WANDB_SWEEPS = sorted((CONFIG_DIR / "sweep").glob("*.yaml"))


def _png_pixels(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


# ----------------------------------------------------------------------------------------------- job folders
@pytest.mark.parametrize("dirname,name", [
    ("optimizer.lr=0.001", "optimizer.lr=0.001"),
    ("optimizer.lr=0.001,seed=1", "optimizer.lr=0.001,seed=1"),
    ("data.root=/data/x y", "data.root=_data_x_y"),               # a path never nests folders
    ("model.cascade_counts=[1,1,1]", "model.cascade_counts=_1,1,1_"),
    ("+debug=fast", "+debug=fast"),
    ("", "job3"),                                                 # nothing swept: the job number
])
def test_job_folder_names(dirname, name):
    assert sweep_job_name(dirname, 3) == name


def test_long_job_names_are_cut_and_stay_distinct():
    first, second = ("optimizer.lr=0.001," + "x" * 200 + tail for tail in ("a", "b"))
    names = [sweep_job_name(text, 0) for text in (first, second)]
    assert all(len(name) == 120 for name in names) and names[0] != names[1]
    assert names[0] == sweep_job_name(first, 7)  # deterministic, independent of the job number


def test_only_swept_overrides_name_the_jobs():
    argv = ["-m", "--config-name=demo", "data.root=/x", "optimizer.lr=1e-3,3e-4", "+debug=fast", "model.cascade_counts=[1,1,1]", "hydra.verbose=true"]
    assert sweep_naming_overrides(argv) == ["hydra.job.config.override_dirname.exclude_keys=['data.root','debug','model.cascade_counts']"]
    assert sweep_naming_overrides(argv[1:]) == []                 # not a sweep
    assert sweep_naming_overrides(["-m", "optimizer.lr=1e-3,3e-4"]) == []
    assert sweep_naming_overrides(["-m", "a=1", "hydra.job.config.override_dirname.exclude_keys=[]"]) == []  # the user's choice


def test_train_yaml_puts_each_job_in_its_own_folder(tmp_path):
    naming = sweep_naming_overrides(["-m", "data.root=/x", f"result_root={tmp_path}", "optimizer.lr=1e-3,3e-4"])
    cfg = compose_config("demo", ["data.root=/x", f"result_root={tmp_path}", "optimizer.lr=0.0003", "hydra.job.num=1", *naming], hydra=True)
    assert cfg.hydra.sweep.dir == f"{tmp_path}/demo"
    job, hydra_folder, _ = cfg.hydra.sweep.subdir.split("/")
    assert (job, hydra_folder) == ("optimizer.lr=0.0003", "hydra")
    moved = job_config(cfg, job)
    assert Path(moved.result_root) / moved.exp_name == tmp_path / "demo" / job and cfg.exp_name == "demo"


# ------------------------------------------------------------------------------ failures and run records
def _fake_training(cfg):
    """What the trainer leaves in the run folder, written with its own writers; lr -> a recognisable Total."""
    if cfg.optimizer.lr > 1:
        raise RuntimeError("loss exploded\nsecond line")
    run = Path(cfg.result_root) / cfg.exp_name
    if (run / "checkpoints" / "model.pt").exists():
        raise UserInputError(f"{run}: already holds a run")
    totals = [0.80, 0.85 + cfg.optimizer.lr, 0.84]
    save_checkpoint(run / "checkpoints" / "model.pt", {"model": {}, "model_config": {}, "epoch": 3})
    write_history(run / "train_loss_log.npy", [[epoch, 0.2] for epoch in range(3)])
    write_history(run / "val_ssim_log.npy", [[epoch, total] for epoch, total in enumerate(totals)])


def _job(jobs: SweepJobs, cfg, root: Path, num: int, name: str | None) -> None:
    output = root / (name or cfg.exp_name) / "hydra" / f"2026-01-01_00-00-0{num}"
    jobs.run(cfg, Invocation(output, [f"optimizer.lr={cfg.optimizer.lr}"], num if name else None, name), _fake_training)


@pytest.fixture
def fabricated_sweep(tmp_path):
    """A sweep folder made by SweepJobs with fake training: two completed jobs, a user error, a crash."""
    root = tmp_path / "result" / "demo"
    jobs = SweepJobs()
    for num, lr in enumerate([0.01, -1, 0.03, 5.0]):
        cfg = compose_config("demo", [f"result_root={tmp_path / 'result'}", f"optimizer.lr={lr}"])
        _job(jobs, cfg, root, num, sweep_job_name(f"optimizer.lr={lr}", num))
    return root, jobs


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(fabricated_sweep, capsys):
    root, jobs = fabricated_sweep
    assert jobs.jobs == 4 and [failure.user_error for failure in jobs.failures] == [True, False]
    assert jobs.exit_status() == 1  # a crash among the failures; only user errors would give 2
    stderr = capsys.readouterr().err
    assert "2 of 4 sweep jobs failed" in stderr and "optimizer.lr=-1" in stderr and "RuntimeError: loss exploded" in stderr
    record = json.loads(next(root.glob(f"optimizer.lr=-1/hydra/*/{RUN_RECORD}")).read_text())
    assert record["status"] == "failed" and "optimizer.lr" in record["error"] and record["sweep_job"] == "optimizer.lr=-1"
    assert record["run_dir"] == str(root / "optimizer.lr=-1") and record["wall_s"] >= 0
    done = json.loads(next(root.glob(f"optimizer.lr=0.01/hydra/*/{RUN_RECORD}")).read_text())
    assert done["status"] == "completed" and done["error"] is None and done["overrides"] == ["optimizer.lr=0.01"]
    assert done["wrote_checkpoint"] and not record["wrote_checkpoint"]
    assert not list((root / "optimizer.lr=-1").glob("*.npy"))


def test_a_single_run_still_raises_and_records(tmp_path):
    jobs = SweepJobs()
    cfg = compose_config("demo", [f"result_root={tmp_path}", "optimizer.lr=-1"])
    with pytest.raises(UserInputError, match="optimizer.lr"):
        _job(jobs, cfg, tmp_path, 0, None)
    record = json.loads(next(tmp_path.glob(f"demo/hydra/*/{RUN_RECORD}")).read_text())
    assert record["status"] == "failed" and record["sweep_job"] is None and jobs.exit_status() == 0


# ----------------------------------------------------------------------------------------- summarize_runs
def test_summarize_runs_tabulates_and_plots(fabricated_sweep, tmp_path, capsys):
    root, _ = fabricated_sweep
    # a run from before run records: only logs and a Hydra overrides file
    old = root / "older_run"
    (old / "hydra" / "t" / ".hydra").mkdir(parents=True)
    write_history(old / "val_ssim_log.npy", [[0, 0.5], [1, float("nan")]])
    OmegaConf.save(OmegaConf.create(["seed=1"]), old / "hydra" / "t" / ".hydra" / "overrides.yaml")
    # the best job again, refused: the summary still shows the invocation that trained it
    jobs = SweepJobs()
    cfg = compose_config("demo", [f"result_root={root.parent}", "optimizer.lr=0.03"])
    _job(jobs, cfg, root, 9, "optimizer.lr=0.03")
    assert jobs.failures and "already holds a run" in jobs.failures[0].error
    csv_path, png_path = tmp_path / "out" / "runs.csv", tmp_path / "out" / "runs.png"
    (tmp_path / "out").mkdir()
    assert summarize_runs.main([str(root), "--csv", str(csv_path), "--png", str(png_path)]) == 0
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["optimizer.lr=0.03", "optimizer.lr=0.01", "older_run", "optimizer.lr=-1", "optimizer.lr=5.0"]
    best = rows[0]
    assert float(best["best_val_total"]) == pytest.approx(0.88) and best["best_epoch"] == "1" and best["epochs"] == "3"
    assert best["status"] == "completed" and best["overrides"] == "optimizer.lr=0.03" and float(best["wall_s"]) >= 0
    assert rows[2]["best_val_total"] == "0.5" and rows[2]["overrides"] == "seed=1" and rows[2]["status"] == ""
    assert rows[3]["status"] == "failed" and "optimizer.lr" in rows[3]["error"] and rows[3]["best_val_total"] == ""
    assert rows[4]["error"].startswith("RuntimeError: loss exploded")
    printed = capsys.readouterr().out
    table = printed.splitlines()
    assert table[0].startswith("run ") and table[1].startswith("optimizer.lr=0.03 ") and "0.8800" in table[1]
    pixels = _png_pixels(png_path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05
    assert not list(tmp_path.rglob("*.tmp"))


def test_summarize_runs_refuses_folders_without_runs(tmp_path):
    with pytest.raises(UserInputError, match="results folder not found"):
        summarize_runs.main([str(tmp_path / "missing")])
    with pytest.raises(UserInputError, match="no training runs"):
        summarize_runs.main([str(tmp_path)])
    (tmp_path / "bad" / "hydra" / "t").mkdir(parents=True)
    (tmp_path / "bad" / "hydra" / "t" / RUN_RECORD).write_text("{not json")
    with pytest.raises(UserInputError, match=r"run\.json: is not a readable run record"):
        summarize_runs.main([str(tmp_path)])


# -------------------------------------------------------------------------------------- W&B sweep example
def _samples(parameters: dict) -> list[dict]:
    """Every grid point of the sweep's values and distributions' ends (what the W&B agent may pass)."""
    choices = {}
    for name, spec in parameters.items():
        if "values" in spec:
            choices[name] = list(spec["values"])
        elif "value" in spec:
            choices[name] = [spec["value"]]
        else:
            choices[name] = [spec["min"], spec["max"]]
    return [dict(zip(choices, point)) for point in itertools.product(*choices.values())]


def _agent_command(sweep: dict, sample: dict) -> list[str]:
    """The command line the W&B agent builds (wandb's own macro expansion for the arguments)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    macros = create_sweep_command_args({"args": {name: {"value": value} for name, value in sample.items()}})
    macros.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    command = []
    for item in sweep["command"]:
        command += macros[item[2:-1]] if item.startswith("${") and item.endswith("}") else [item]
    return command


def test_there_is_a_wandb_sweep_example():
    assert WANDB_SWEEPS


@pytest.mark.parametrize("sweep_file", WANDB_SWEEPS, ids=lambda path: path.name)
def test_wandb_sweep_commandscompose_config(sweep_file, tmp_path, monkeypatch):
    sweep = yaml.safe_load(sweep_file.read_text())
    assert (REPO / sweep["program"]).is_file() and "${args_no_hyphens}" in sweep["command"]
    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    for sample in _samples(sweep["parameters"]):
        command = _agent_command(sweep, sample)
        assert command[:3] == ["/usr/bin/env", "python", "final_main.py"]
        argv = [*command[3:], f"result_root={tmp_path}", "data.root=/nowhere"]
        check_command_line(argv, CONFIG_DIR, "train")  # what final_main.py checks before Hydra runs
        config_name = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--config-name="))
        cfg = compose_config(config_name, [arg for arg in argv if not arg.startswith("-")])
        check_config(cfg)
        assert sweep["metric"]["name"] == f"best/{cfg.training.select_best_by}"
        assert cfg.exp_name == "demo_wandb_abc123" and cfg.logger.mode == "online"
        for name, value in sample.items():
            node = OmegaConf.select(cfg, name)
            if (CONFIG_DIR / name).is_dir():  # a config group: its option was picked
                assert node._target_ == OmegaConf.load(CONFIG_DIR / name / f"{value}.yaml")._target_, name
            else:
                assert node == pytest.approx(value), name


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture
def small_data(tiny_data, tmp_path) -> Path:
    """One knee train volume and both knee val volumes of the tiny preset (links): a fast epoch."""
    root = tmp_path / "Data"
    for split, names in (("train", ["knee_acc8_1.h5"]), ("val", ["knee_acc4_2.h5", "knee_acc8_2.h5"])):
        for kind in ("kspace", "image"):
            (root / split / kind).mkdir(parents=True)
            for name in names:
                (root / split / kind / name).symlink_to(tiny_data / split / kind / name)
    return root


@pytest.mark.slow
def test_multirun_gives_every_job_its_folder_and_survives_a_failing_job(small_data, tmp_path):
    result_root = tmp_path / "result"
    command = [sys.executable, "final_main.py", "-m", "--config-name=demo", f"data.root={small_data}", "data.synthetic_preset=null",
               f"result_root={result_root}", "exp_name=sweep", "training.epochs=1", "logger.mode=disabled", "data.num_workers=0",
               *SMALL_MODEL, "optimizer.lr=1e-3,-1,3e-4"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2, run.stderr[-3000:]  # a job failed, with a user error
    assert "1 of 3 sweep jobs failed" in run.stderr and "sweep job #1 (optimizer.lr=-1): config value optimizer.lr=-1" in run.stderr
    sweep = result_root / "sweep"
    assert sorted(path.name for path in sweep.iterdir() if path.is_dir()) == ["optimizer.lr=-1", "optimizer.lr=0.0003", "optimizer.lr=0.001"]
    for job, lr in (("optimizer.lr=0.001", 1e-3), ("optimizer.lr=0.0003", 3e-4)):
        assert (sweep / job / "checkpoints" / "best_model.pt").is_file() and np.load(sweep / job / "val_ssim_log.npy").shape == (1, 2)
        record = json.loads(next(sweep.glob(f"{job}/hydra/*/{RUN_RECORD}")).read_text())
        assert record["status"] == "completed" and f"optimizer.lr={lr}" in record["overrides"] and record["wall_s"] > 0
        assert list(sweep.glob(f"{job}/hydra/*/final_main.log"))
    failed_log = next(sweep.glob("optimizer.lr=-1/hydra/*/final_main.log")).read_text()
    assert "sweep job #1 (optimizer.lr=-1) failed: config value optimizer.lr=-1 is invalid" in failed_log
    assert not (sweep / "optimizer.lr=-1" / "checkpoints").exists() and not (REPO / "multirun").exists()

    # the same sweep again: every job folder that holds a run is refused, nothing is overwritten
    before = (sweep / "optimizer.lr=0.001" / "checkpoints" / "model.pt").stat().st_mtime_ns
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and "3 of 3 sweep jobs failed" in again.stderr and "already holds a run" in again.stderr
    assert (sweep / "optimizer.lr=0.001" / "checkpoints" / "model.pt").stat().st_mtime_ns == before

    summary = subprocess.run([sys.executable, "-m", "utils.tools.summarize_runs", str(sweep)], cwd=REPO, capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.startswith("overrides of every run: ") and "training.epochs=1" in summary.stdout.splitlines()[0]
    with open(sweep / "runs_summary.csv", newline="") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"optimizer.lr=0.001", "optimizer.lr=0.0003", "optimizer.lr=-1"}
    for job in ("optimizer.lr=0.001", "optimizer.lr=0.0003"):
        total = float(np.load(sweep / job / "val_ssim_log.npy")[0, 1])
        assert float(rows[job]["best_val_total"]) == pytest.approx(total) and rows[job]["best_epoch"] == "0"
        assert float(rows[job]["wall_s"]) > 0 and job in rows[job]["overrides"]
        assert rows[job]["status"] == "completed" and rows[job]["error"] == ""  # the refused re-run does not count
    assert rows["optimizer.lr=-1"]["best_val_total"] == ""
    assert _png_pixels(sweep / "runs_val_total.png")[..., :3].std() > 0.05
