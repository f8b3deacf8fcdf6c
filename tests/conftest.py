"""Shared fixtures: one tiny synthetic dataset per test session, made by the project's own generator."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def compose_config(config_name: str = "demo", overrides=(), hydra: bool = False):
    """A composed config of ``configs/`` (the one compose helper of the test modules); ``hydra`` keeps the hydra node."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=hydra)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A read-only-by-convention tiny dataset (train, val, leaderboard); copy it before changing files."""
    from utils.data.synthetic.generate import generate  # imported here: collecting tests needs no generator

    root = tmp_path_factory.mktemp("tiny") / "Data"
    generate(root, "tiny", seed=430, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def fastmri_dir(tmp_path_factory) -> Path:
    """The tiny preset as public-fastMRI-format multicoil files (6 brain, 6 knee), for the converter's tests."""
    from utils.data.synthetic.generate import generate

    out = tmp_path_factory.mktemp("fastmri") / "multicoil_train"
    generate(out, "tiny", seed=430, workers=1, progress=False, file_format="fastmri")
    return out


SPLIT = (1.0, 1.0, 1.0)  # the tiny preset's 6 volumes per anatomy: 2 train, 2 val, 2 leaderboard (acc4 + acc8)


def fastmri_plus_csvs(fastmri_dir: Path) -> list[Path]:
    """The generator's fastMRI+-style CSVs of its lesions: Annotations/brain.csv, Annotations/knee.csv."""
    return sorted((fastmri_dir / "Annotations").glob("*.csv"))


@pytest.fixture(scope="session")
def converted(fastmri_dir, tmp_path_factory) -> Path:
    """``fastmri_dir`` converted to the challenge layout (split ``SPLIT``) with its fastMRI+ boxes."""
    from utils.data.convert_fastmri.convert import convert

    out = tmp_path_factory.mktemp("converted") / "Data"
    convert([fastmri_dir], out, seed=430, split=SPLIT, workers=1, progress=False, annotations=fastmri_plus_csvs(fastmri_dir))
    return out


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


GOLDEN_DIR = Path(os.environ.get("MRI_GOLDEN_DIR", Path(__file__).resolve().parents[2] / "shared" / "golden"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """``../shared/golden``: outputs of the reference implementations' own code (see its README.md).

    CI has ``shared/`` beside the clone, so there a missing folder fails; a developer without it may point
    ``MRI_GOLDEN_DIR`` at a copy, or the reference-equality tests are skipped with that reason.
    """
    if not GOLDEN_DIR.is_dir():
        message = f"{GOLDEN_DIR}: no golden vectors (set MRI_GOLDEN_DIR to the shared/golden folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return GOLDEN_DIR
