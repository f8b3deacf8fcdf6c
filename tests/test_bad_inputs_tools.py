"""Bad input to reconstruct_from_ckpt.py, leaderboard_eval.py and the generator: one line, exit 2, nothing overwritten.

``--debug`` shows the traceback.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.bad_inputs import assert_one_line_error, assert_unchanged, checkpoints, data, edit_h5, replace_dataset, run, snapshot
from tests.conftest import write_reconstructions

# ---------------------------------------------------------------------------------------------- reconstruct_from_ckpt.py


def reconstruct(checkpoint: Path, leaderboard: Path, out: Path, *extra: str, debug: bool = False) -> subprocess.CompletedProcess:
    return run("reconstruct_from_ckpt.py", "-c", str(checkpoint), "-p", str(leaderboard), "-g", "-1", "-o", str(out), "--no-progress", *extra, debug=debug)


def _previous_reconstructions(data: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = write_reconstructions(data / "leaderboard", tmp_path / "recon")
    return out, snapshot(out)


CHECKPOINT_CASES = {
    "checkpoint holding pickled objects": ("pickled", "holds the object argparse.Namespace"),
    "bare state dict of another repository": ("foreign", "not a checkpoint of this repository"),
    "weights of another model config": ("mismatch", "weights do not fit the model config stored with them: 9 tensor(s) of another shape (first: encoder.conv.weight"),
    "invalid stored model config": ("invalid_config", "model.cascade_counts"),
    "truncated checkpoint": ("truncated", "is truncated or corrupt"),
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
