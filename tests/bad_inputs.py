"""Helpers and fixtures of the bad-input corpus (``tests/test_bad_inputs_*.py``).

Broken copies are trees of symbolic links to the session's tiny dataset; a file is copied for real only when a
case changes it.
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

from tests.test_training import SMALL_MODEL
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

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
