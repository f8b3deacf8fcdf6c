"""Shared fixtures: one tiny synthetic dataset per test session, made by the project's own generator."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A read-only-by-convention tiny dataset (train, val, leaderboard); copy it before changing files."""
    from utils.data.synthetic.generate import generate  # imported here: collecting tests needs no generator

    root = tmp_path_factory.mktemp("tiny") / "Data"
    generate(root, "tiny", seed=430, workers=1, progress=False)
    return root


@pytest.fixture
def tiny_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the whole tiny dataset that a test may change."""
    copy = tmp_path / "Data"
    shutil.copytree(tiny_data, copy)
    return copy


@pytest.fixture
def tiny_train_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny train split alone (cheaper), under ``<copy>/train``."""
    copy = tmp_path / "Data"
    shutil.copytree(tiny_data / "train", copy / "train")
    return copy


def write_reconstructions(leaderboard_root: Path, out_root: Path, source_key: str = "image_label", key: str = "reconstruction") -> Path:
    """Write ``out_root/acc{4,8}/<name>.h5`` holding ``source_key`` of each leaderboard image file as ``key``."""
    for acc_dir in sorted(leaderboard_root.glob("acc*")):
        (out_root / acc_dir.name).mkdir(parents=True, exist_ok=True)
        for image_path in sorted((acc_dir / "image").glob("*.h5")):
            with h5py.File(image_path, "r") as source:
                data = np.asarray(source[source_key], dtype=np.float32)
            with h5py.File(out_root / acc_dir.name / image_path.name, "w") as target:
                target.create_dataset(key, data=data)
    return out_root
