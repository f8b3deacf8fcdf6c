"""The fastMRI converter's refusals: every bad source is one line naming the file, and nothing is written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from utils.data.convert_fastmri.__main__ import main as convert_main
from utils.data.convert_fastmri.convert import convert
from utils.errors import UserInputError, run_cli

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)
    return path


def _good_kspace(shape=(1, 2, 128, 128)) -> np.ndarray:
    return (np.ones(shape) + 1j).astype(np.complex64)


BAD_FILES = {
    "singlecoil": (
        "file1000100.h5",
        {"kspace": _good_kspace((1, 128, 128)), "reconstruction_esc": np.zeros((1, 320, 320), np.float32)},
        "singlecoil",
    ),
    "missing kspace": ("file1000101.h5", {"reconstruction_rss": np.zeros((1, 320, 320), np.float32)}, "missing key 'kspace'"),
    "five axes": ("file1000102.h5", {"kspace": _good_kspace((1, 2, 1, 128, 128))}, "expected 4 axes"),
    "one coil": ("file1000103.h5", {"kspace": _good_kspace((1, 1, 128, 128))}, "not multicoil"),
    "too small": ("file1000104.h5", {"kspace": _good_kspace((1, 2, 64, 32))}, "at least 128"),
    "real-valued": ("file1000105.h5", {"kspace": np.ones((1, 2, 128, 128), np.float32)}, "must be complex"),
    "fastMRI test file": ("file1000106.h5", {"kspace": _good_kspace(), "mask": np.ones(128, np.float32)}, "under-sampled"),
    "no slices": ("file1000107.h5", {"kspace": _good_kspace((0, 2, 128, 128))}, "no slices"),
    "unknown anatomy": ("scan.h5", {"kspace": _good_kspace()}, "--anatomy"),
}


def _cli(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(convert_main, list(argv))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("name,datasets,problem", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(name, datasets, problem, fastmri_dir, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    good = sorted(fastmri_dir.glob("file1*.h5"))[0]
    (source / good.name).symlink_to(good)  # a good file first: still nothing may be written
    bad = _write(source / name, **datasets)
    code, err = _cli(capsys, "--src", str(source), "--out", str(tmp_path / "Data"), "--workers", "1", "--no-progress")
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {bad}: ") and problem in err, err
    assert not (tmp_path / "Data").exists()


def test_unreadable_slices_stop_the_run_without_half_written_files(fastmri_dir, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    kspace = _good_kspace((2, 2, 128, 128))
    kspace[1, 0, 5, 5] = np.nan
    nan_file = _write(source / "file1000200.h5", kspace=kspace)
    undersampled = _good_kspace((1, 2, 128, 128))
    undersampled[..., np.arange(128) % 4 != 0] = 0  # acc4 without a centre block: 96 empty columns
    empty_file = _write(source / "file1000201.h5", kspace=undersampled)
    for bad, problem in ((nan_file, "slice 1 of 'kspace' holds NaN"), (empty_file, "96 of 128 columns all zero")):
        code, err = _cli(capsys, "--src", str(bad), "--out", str(tmp_path / bad.stem), "--split", "1", "0", "0", "--no-progress")
        assert code == 2 and err.startswith(f"error: {bad}: ") and problem in err, err
        assert not list((tmp_path / bad.stem).rglob("*.h5")) and not list((tmp_path / bad.stem).rglob("*.tmp"))


def test_cli_help_and_bad_flags(tmp_path):
    cli = [sys.executable, "-m", "utils.data.convert_fastmri"]
    help_run = subprocess.run([*cli, "--help"], cwd=REPO, capture_output=True, text=True)
    assert help_run.returncode == 0 and "--src" in help_run.stdout and "--limit" in help_run.stdout
    bad = subprocess.run(
        [*cli, "--src", str(tmp_path / "none"), "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr == f"error: {tmp_path / 'none'}: no such file or folder\n"


def test_the_same_volume_given_twice_is_refused(fastmri_dir, tmp_path):
    with pytest.raises(UserInputError, match="give each volume once"):
        convert([fastmri_dir, next(fastmri_dir.glob("*.h5"))], tmp_path, progress=False)
