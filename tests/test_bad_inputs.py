"""The bad-input corpus: every user mistake ends in one line naming the file or key, exit status 2, no traceback.

Each case runs the real command line (``final_main.py``, ``reconstruct_from_ckpt.py``, ``leaderboard_eval.py``,
``python -m utils.data.synthetic``) in a subprocess on a broken copy of the tiny synthetic data, and checks
that nothing that existed before (a run folder, reconstructions, a CSV, a dataset) was modified. Broken copies
are trees of symbolic links to the session's tiny dataset; a file is copied for real only when a case changes it.
``--debug`` (``MRI_DEBUG=1`` for final_main.py) shows the traceback.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import write_reconstructions
from tests.test_training import SMALL_MODEL
from utils.model.builder import build_model, load_model_config
from utils.training.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
PROGRESS_BAR = re.compile(r"\d+%\|")  # a tqdm line; training-time cases may leave one on stderr


# ---------------------------------------------------------------------------------------------- helpers


def run(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "MRI_DEBUG": "1" if debug else ""}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *names: object, progress_bars: bool = False) -> str:
    """Exit status 2, no traceback, and exactly one ``error: ...`` line on stderr that contains every name."""
    report = f"exit {result.returncode}\nstdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 2, report
    assert "Traceback" not in result.stdout + result.stderr, report
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if progress_bars:
        lines = [line for line in lines if not PROGRESS_BAR.search(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), report
    for name in names:
        assert str(name) in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


def link_tree(source: Path, target: Path) -> Path:
    """``target`` mirrors ``source``: real folders, symbolic links to its files."""
    for folder, _, files in os.walk(source):
        destination = target / Path(folder).relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in files:
            (destination / name).symlink_to(Path(folder) / name)
    return target


def own(path: Path) -> Path:
    """Replace a link by a real copy, so that changing it leaves the shared tiny dataset alone."""
    if path.is_symlink():
        source = path.resolve()
        path.unlink()
        shutil.copyfile(source, path)
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """(mtime, sha1) of every file under ``folder``, following links."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_unchanged(before: dict[str, tuple[int, str]], folder: Path) -> None:
    after = snapshot(folder)
    assert {name: after.get(name) for name in before} == before, "a file that existed before was modified"


def edit_h5(path: Path, change: Callable[[h5py.File], None]) -> None:
    with h5py.File(own(path), "r+") as handle:
        change(handle)


def replace_dataset(handle: h5py.File, key: str, data: np.ndarray) -> None:
    del handle[key]
    handle.create_dataset(key, data=data)


def truncate(path: Path) -> None:
    data = own(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt(path: Path) -> None:
    own(path).write_bytes(b"this is not an HDF5 file\n" * 1000)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A linked copy of the tiny dataset that a case may break."""
    return link_tree(tiny_data, tmp_path / "Data")


def _small_model_config(*overrides: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(load_model_config("demo_varnet", [*SMALL_MODEL, *overrides]), resolve=True)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A good checkpoint of the small model and checkpoints broken in every way a user may meet."""
    folder = tmp_path_factory.mktemp("checkpoints")
    config = _small_model_config()
    torch.manual_seed(0)
    weights = build_model(config).state_dict()
    other_weights = build_model(_small_model_config("model.feature_chans=6")).state_dict()
    paths = {name: folder / f"{name}.pt" for name in ("good", "other_config", "mismatch", "invalid_config", "pickled", "foreign", "truncated")}
    save_checkpoint(paths["good"], {"model": weights, "model_config": config, "epoch": 1})
    save_checkpoint(paths["other_config"], {"model": other_weights, "model_config": _small_model_config("model.feature_chans=6"), "epoch": 1})
    save_checkpoint(paths["mismatch"], {"model": other_weights, "model_config": config, "epoch": 1})
    save_checkpoint(paths["invalid_config"], {"model": weights, "model_config": {**config, "cascade_counts": [-1, 0, 1]}})
    # the original entry's habit: an argparse Namespace pickled into the checkpoint
    torch.save({"format": CHECKPOINT_FORMAT, "model": weights, "model_config": config, "args": argparse.Namespace(lr=1e-3)}, paths["pickled"])
    torch.save(weights, paths["foreign"])  # a bare state dict: another repository's (or architecture's) file
    good = paths["good"].read_bytes()
    paths["truncated"].write_bytes(good[: len(good) // 2])
    return paths


# ---------------------------------------------------------------------------------------------- final_main.py

TRAIN = ["final_main.py", "--config-name=demo", "logger.mode=disabled", "data.num_workers=0", "data.synthetic_preset=null", "exp_name=run", *SMALL_MODEL]


def _nan_in_every_train_slice(data: Path) -> tuple[Path, str]:
    for path in (data / "train" / "kspace").glob("*.h5"):
        edit_h5(path, lambda handle: handle["kspace"].__setitem__((slice(None), 0, 0, 0), np.nan))
    return data / "train" / "kspace", "NaN"


def _rename(data: Path) -> tuple[Path, str]:
    (data / "train" / "image" / "knee_acc8_1.h5").rename(data / "train" / "image" / "knee_acc8_5.h5")
    return data / "train" / "kspace" / "knee_acc8_1.h5", "no matching file"


def _empty(data: Path) -> tuple[Path, str]:
    for split in ("train", "val"):
        for kind in ("kspace", "image"):
            shutil.rmtree(data / split / kind)
            (data / split / kind).mkdir()
    return data / "train" / "kspace", "no .h5 files"


def _missing(data: Path) -> tuple[Path, str]:
    shutil.rmtree(data)
    return data / "train" / "kspace", "not found"


def _without(split: str, kind: str, name: str, key: str) -> Callable[[Path], tuple[Path, str]]:
    def breaker(data: Path) -> tuple[Path, str]:
        edit_h5(data / split / kind / name, lambda handle: handle.__delitem__(key))
        return data / split / kind / name, f"missing key '{key}'"

    return breaker


def _without_max(data: Path) -> tuple[Path, str]:
    path = data / "val" / "image" / "brain_acc8_2.h5"
    edit_h5(path, lambda handle: handle.attrs.__delitem__("max"))
    return path, "missing attribute 'max'"


def _short_mask(data: Path) -> tuple[Path, str]:
    path = data / "train" / "kspace" / "knee_acc8_1.h5"
    edit_h5(path, lambda handle: replace_dataset(handle, "mask", handle["mask"][:-1]))
    return path, "k-space width"


def _fewer_slices(data: Path) -> tuple[Path, str]:
    path = data / "val" / "image" / "knee_acc4_2.h5"
    edit_h5(path, lambda handle: replace_dataset(handle, "image_label", handle["image_label"][:1]))
    return path, "has 1 slices but knee_acc4_2.h5 has 2"


def _truncated(data: Path) -> tuple[Path, str]:
    truncate(data / "train" / "kspace" / "brain_acc8_1.h5")
    return data / "train" / "kspace" / "brain_acc8_1.h5", "cannot be read as HDF5 (truncated:"


def _corrupt(data: Path) -> tuple[Path, str]:
    corrupt(data / "train" / "image" / "knee_acc4_1.h5")
    return data / "train" / "image" / "knee_acc4_1.h5", "cannot be read as HDF5 (not an HDF5 file"


DATA_CASES = {
    "missing data folder": _missing,
    "empty folders": _empty,
    "image/kspace name mismatch": _rename,
    "no kspace key": _without("train", "kspace", "brain_acc4_1.h5", "kspace"),
    "no mask key": _without("train", "kspace", "knee_acc4_1.h5", "mask"),
    "no image_label key": _without("train", "image", "brain_acc8_1.h5", "image_label"),
    "no max attribute": _without_max,
    "mask length != width": _short_mask,
    "slice count mismatch": _fewer_slices,
    "truncated h5": _truncated,
    "corrupt h5": _corrupt,
}


def _existing_run(result_root: Path) -> Path:
    """A finished run named like the one the case starts: it must survive the failed start untouched."""
    run_dir = result_root / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "model.pt").write_bytes(b"previous run")
    np.save(run_dir / "train_loss_log.npy", np.array([[0.0, 0.5]]))
    return run_dir


@pytest.mark.parametrize("breaker", DATA_CASES.values(), ids=DATA_CASES.keys())
def test_training_on_bad_data(breaker, data, tmp_path):
    path, problem = breaker(data)
    run_dir = _existing_run(tmp_path / "result")
    before = snapshot(run_dir)
    result = run(*TRAIN, f"data.root={data}", f"result_root={tmp_path / 'result'}")
    assert_one_line_error(result, path, problem)
    assert_unchanged(before, run_dir)


def test_nan_kspace_stops_training_at_the_first_read_and_writes_nothing(data, tmp_path):
    path, problem = _nan_in_every_train_slice(data)
    result = run(*TRAIN, f"data.root={data}", f"result_root={tmp_path / 'result'}")
    assert_one_line_error(result, path, problem, progress_bars=True)
    run_dir = tmp_path / "result" / "run"
    written = [p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file() and p.relative_to(run_dir).parts[0] != "hydra"]
    assert written == [], f"a failed run left {written}"


CONFIG_CASES = {
    # id: (arguments added to TRAIN (a --config-name replaces demo), names the error line must hold)
    "config name that does not exist": (["--config-name=no_such_recipe"], ["--config-name=no_such_recipe", "demo"]),
    "malformed override": (["training.epochs=[1"], ["training.epochs=[1"]),
    "override of an unknown key": (["trainer.epochs=3"], ["trainer.epochs"]),
    "cascade_counts of length 2": (["model.cascade_counts=[1,2]"], ["model.cascade_counts", "[1, 2]"]),
    "negative cascade_counts": (["model.cascade_counts=[-1,0,1]"], ["model.cascade_counts", "[-1, 0, 1]"]),
    "existing run without resume or overwrite": ([], ["run", "already holds a run", "training.resume=true"]),
}


def _train_command(arguments: list[str]) -> list[str]:
    """TRAIN plus ``arguments``; a ``--config-name`` among them replaces demo (options go before overrides)."""
    options = [argument for argument in arguments if argument.startswith("--")]
    base = [argument for argument in TRAIN if not (options and argument.startswith("--config-name"))]
    return [base[0], *options, *base[1:], *(argument for argument in arguments if argument not in options)]


@pytest.mark.parametrize("arguments,names", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_training_with_bad_config(arguments, names, tiny_data, tmp_path):
    run_dir = _existing_run(tmp_path / "result")
    before = snapshot(run_dir)
    result = run(*_train_command(arguments), f"data.root={tiny_data}", f"result_root={tmp_path / 'result'}")
    assert_one_line_error(result, *names)
    assert_unchanged(before, run_dir)


def test_hydra_option_after_the_overrides(tmp_path):
    result = run("final_main.py", f"result_root={tmp_path}", "--config-name=demo", "data.root=/nonexistent", "data.synthetic_preset=null")
    assert_one_line_error(result, "unrecognized arguments", "before the key=value overrides")
    assert list(tmp_path.iterdir()) == []


def test_negative_seed_is_a_config_error():
    """numpy's seeded generators take no negative seed: one line naming ``seed``, not a traceback from numpy."""
    from hydra import compose, initialize_config_dir

    from utils.errors import UserInputError
    from utils.training.setup import check_config

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="demo", overrides=["seed=-1"])
    with pytest.raises(UserInputError, match=r"seed=-1"):
        check_config(cfg)


def test_resume_from_a_checkpoint_of_another_model_config(tiny_data, tmp_path, checkpoints):
    run_dir = _existing_run(tmp_path / "result")
    shutil.copyfile(checkpoints["other_config"], run_dir / "checkpoints" / "model.pt")
    before = snapshot(run_dir)
    result = run(*TRAIN, "training.resume=true", f"data.root={tiny_data}", f"result_root={tmp_path / 'result'}")
    assert_one_line_error(result, run_dir / "checkpoints" / "model.pt", "another model config")
    assert_unchanged(before, run_dir)


def test_training_into_an_unwritable_result_root(tiny_data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run(*TRAIN, f"data.root={tiny_data}", f"result_root={blocker / 'result'}")
    assert_one_line_error(result, blocker / "result" / "run", "cannot create the run folder")
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------- reconstruct_from_ckpt.py


def reconstruct(checkpoint: Path, leaderboard: Path, out: Path, *extra: str, debug: bool = False) -> subprocess.CompletedProcess:
    return run("reconstruct_from_ckpt.py", "-c", str(checkpoint), "-p", str(leaderboard), "-g", "-1", "-o", str(out), "--no-progress", *extra, debug=debug)


def _previous_reconstructions(data: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = write_reconstructions(data / "leaderboard", tmp_path / "recon")
    return out, snapshot(out)


CHECKPOINT_CASES = {
    "checkpoint holding pickled objects": ("pickled", "pickled Python objects"),
    "bare state dict of another repository": ("foreign", "not a checkpoint of this repository"),
    "weights of another model config": ("mismatch", "weights do not fit the model config stored with them: 9 tensor(s) of another shape (first: encoder.conv.weight"),
    "invalid stored model config": ("invalid_config", "model.cascade_counts"),
    "truncated checkpoint": ("truncated", "not a readable PyTorch checkpoint"),
}


@pytest.mark.parametrize("name,problem", CHECKPOINT_CASES.values(), ids=CHECKPOINT_CASES.keys())
def test_reconstruct_with_bad_checkpoint(name, problem, checkpoints, data, tmp_path):
    out, before = _previous_reconstructions(data, tmp_path)
    result = reconstruct(checkpoints[name], data / "leaderboard", out)
    assert_one_line_error(result, checkpoints[name], problem)
    assert_unchanged(before, out)


def test_reconstruct_without_acc8(checkpoints, data, tmp_path):
    out, before = _previous_reconstructions(data, tmp_path)
    shutil.rmtree(data / "leaderboard" / "acc8")
    result = reconstruct(checkpoints["good"], data / "leaderboard", out)
    assert_one_line_error(result, data / "leaderboard" / "acc8" / "kspace", "not found")
    assert_unchanged(before, out)


def test_reconstruct_nan_kspace_with_loader_workers(checkpoints, data, tmp_path):
    """The error crosses a DataLoader worker process (default --num_workers 2) and still reads as one line."""
    out, before = _previous_reconstructions(data, tmp_path)
    path = data / "leaderboard" / "acc4" / "kspace" / "brain_test1.h5"  # the first volume reconstructed
    edit_h5(path, lambda handle: handle["kspace"].__setitem__((0, 0, 0, 0), np.nan))
    result = reconstruct(checkpoints["good"], data / "leaderboard", out, "--num_workers", "2")
    assert_one_line_error(result, path, "slice 0 of 'kspace' holds NaN")
    assert_unchanged(before, out)


def test_reconstruct_into_an_unwritable_folder(checkpoints, data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = reconstruct(checkpoints["good"], data / "leaderboard", blocker / "recon")
    assert_one_line_error(result, blocker / "recon", "cannot create the output folder")


# ---------------------------------------------------------------------------------------------- leaderboard_eval.py


def evaluate(leaderboard: Path, recon: Path, *extra: str, debug: bool = False) -> subprocess.CompletedProcess:
    return run("leaderboard_eval.py", "-lp", str(leaderboard), "-yp", str(recon), "--no-progress", *extra, debug=debug)


def _drop_file(recon: Path, leaderboard: Path) -> tuple[Path, list[str]]:
    (recon / "acc8" / "knee_test1.h5").unlink()
    return recon / "acc8", ["missing knee_test1.h5"]


def _wrong_shape(recon: Path, leaderboard: Path) -> tuple[Path, list[str]]:
    edit_h5(recon / "acc4" / "brain_test1.h5", lambda handle: replace_dataset(handle, "reconstruction", handle["reconstruction"][:, :, :380]))
    return recon / "acc4", ["brain_test1.h5 has shape (2, 384, 380)"]


def _wrong_key(recon: Path, leaderboard: Path) -> tuple[Path, list[str]]:
    def rename(handle: h5py.File) -> None:
        handle.move("reconstruction", "recon")

    edit_h5(recon / "acc8" / "brain_test1.h5", rename)
    return recon / "acc8", ["brain_test1.h5 has no key 'reconstruction'"]


def _nan_reconstruction(recon: Path, leaderboard: Path) -> tuple[Path, list[str]]:
    edit_h5(recon / "acc4" / "knee_test1.h5", lambda handle: handle["reconstruction"].__setitem__((1, 5, 5), np.nan))
    return recon / "acc4", ["NaN", "knee_test1.h5"]


def _no_acc8_targets(recon: Path, leaderboard: Path) -> tuple[Path, list[str]]:
    shutil.rmtree(leaderboard / "acc8")
    return leaderboard / "acc8" / "image", ["leaderboard target folder not found"]


EVAL_CASES = {
    "missing reconstruction file": _drop_file,
    "reconstruction of the wrong shape": _wrong_shape,
    "reconstruction under the wrong key": _wrong_key,
    "NaN in a reconstruction": _nan_reconstruction,
    "leaderboard without acc8": _no_acc8_targets,
}


@pytest.mark.parametrize("breaker", EVAL_CASES.values(), ids=EVAL_CASES.keys())
def test_eval_with_bad_reconstructions(breaker, data, tmp_path):
    recon = write_reconstructions(data / "leaderboard", tmp_path / "recon")
    csv = tmp_path / "scores.csv"
    csv.write_text("previous scores\n")
    path, names = breaker(recon, data / "leaderboard")
    result = evaluate(data / "leaderboard", recon, "--csv", str(csv))
    assert_one_line_error(result, path, *names)
    assert csv.read_text() == "previous scores\n"


def test_eval_csv_into_an_unwritable_folder(data, tmp_path):
    recon = write_reconstructions(data / "leaderboard", tmp_path / "recon")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = evaluate(data / "leaderboard", recon, "--csv", str(blocker / "scores.csv"))
    assert_one_line_error(result, blocker, "--csv")
    assert "Leaderboard SSIM" not in result.stdout  # refused before scoring, not after


# ---------------------------------------------------------------------------------------------- python -m utils.data.synthetic


def generator(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("-m", "utils.data.synthetic", "--out", str(out), "--preset", "tiny", "--workers", "1", *extra)


def _foreign_data(out: Path) -> tuple[Path, str]:
    (out / "train" / "kspace").mkdir(parents=True)
    (out / "train" / "kspace" / "brain_acc4_1.h5").write_bytes(b"real challenge data")
    return out, "did not write"


GENERATOR_CASES = {
    "output folder holding data it did not write": (_foreign_data, []),
    "negative seed": (lambda out: ("--seed -1", "non-negative integer"), ["--seed", "-1"]),
    "unknown preset": (lambda out: ("--preset", "invalid choice: 'huge'"), ["--preset", "huge"]),
}


@pytest.mark.parametrize("prepare,extra", GENERATOR_CASES.values(), ids=GENERATOR_CASES.keys())
def test_generator_refuses(prepare, extra, tmp_path):
    out = tmp_path / "Data"
    name, problem = prepare(out)
    before = snapshot(out) if out.exists() else {}
    result = generator(out, *extra)
    assert_one_line_error(result, name, problem)
    if before:
        assert_unchanged(before, out)
        assert snapshot(out) == before  # nothing added either
    else:
        assert not out.exists()


def test_generator_into_a_path_beneath_a_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = generator(blocker / "Data")
    assert_one_line_error(result, blocker / "Data", "cannot create the data folders")


# ---------------------------------------------------------------------------------------------- debug


def test_debug_flag_shows_the_traceback(data, tmp_path):
    missing = tmp_path / "missing.pt"
    result = reconstruct(missing, data / "leaderboard", tmp_path / "recon", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserInputError" in result.stderr
    assert f"{missing}: checkpoint not found" in result.stderr


@pytest.mark.parametrize("arguments", [["data.root=/nonexistent/Data"], ["--config-name=no_such_recipe"]], ids=["data", "hydra"])
def test_mri_debug_shows_the_traceback_of_final_main(arguments, tmp_path):
    result = run(*_train_command(arguments), f"result_root={tmp_path / 'result'}", debug=True)
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserInputError" in result.stderr
