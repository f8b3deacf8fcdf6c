"""One fuzzed file through each entry point, as a user runs it: exit status 2, one line, no traceback, nothing
written or changed, and no payload run (each subprocess costs seconds, so one case per entry point; the gates
themselves are fuzzed in process by tests/test_fuzz_gates.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tests.bad_inputs import assert_one_line_error, assert_unchanged, checkpoints, data, own, run, snapshot  # noqa: F401
from tests.conftest import write_reconstructions
from tests.fuzz_corpus import marker_path, nan_slice, splice_payload
from tests.test_bad_inputs_training import TRAIN


def _payload_checkpoint(checkpoints: dict[str, Path], folder: Path, seed: int = 0) -> Path:
    path = folder / "fuzzed.pt"
    shutil.copyfile(checkpoints["good"], path)
    splice_payload(path, np.random.default_rng(seed))
    return path


def _assert_no_payload(folder: Path) -> None:
    assert not marker_path(folder).exists(), "a payload ran"


def test_reconstruct_with_a_fuzzed_checkpoint(checkpoints, data, tmp_path):
    source = _payload_checkpoint(checkpoints, tmp_path)
    out = tmp_path / "out"
    result = run("reconstruct_from_ckpt.py", "-c", str(source), "-p", str(data / "leaderboard"), "-g", "-1", "-o", str(out))
    assert_one_line_error(result, source)
    assert not out.exists()
    _assert_no_payload(tmp_path)


def test_import_a_fuzzed_checkpoint(checkpoints, tmp_path):
    source = _payload_checkpoint(checkpoints, tmp_path, seed=1)
    result = run("-m", "utils.tools.import_checkpoint", str(source), "--out", str(tmp_path / "out.pt"))
    assert_one_line_error(result, source)
    assert not (tmp_path / "out.pt").exists()
    _assert_no_payload(tmp_path)


def test_init_from_a_fuzzed_checkpoint(checkpoints, tiny_data, tmp_path):
    source = _payload_checkpoint(checkpoints, tmp_path, seed=2)
    result = run(*TRAIN, f"data.root={tiny_data}", f"result_root={tmp_path / 'result'}", f"training.init_from={source}")
    assert_one_line_error(result, source)
    assert not (tmp_path / "result" / "run" / "checkpoints").exists()
    _assert_no_payload(tmp_path)


def test_manifest_naming_a_fuzzed_checkpoint(checkpoints, data, tmp_path):
    source = _payload_checkpoint(checkpoints, tmp_path, seed=3)
    manifest = tmp_path / "experts.yaml"
    manifest.write_text(f"router: rule\nexperts: {{brain: {checkpoints['good']}, knee: {source.name}}}\n")
    result = run("reconstruct_from_ckpt.py", "-c", str(manifest), "-p", str(data / "leaderboard"), "-g", "-1", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, source)
    assert not (tmp_path / "out").exists()
    _assert_no_payload(tmp_path)


def test_training_on_fuzzed_data_files(data, tmp_path):
    for victim in (data / "train" / "kspace").glob("*.h5"):  # every file, so that the first batches meet one
        nan_slice(own(victim), "kspace", 1)
    result = run(*TRAIN, f"data.root={data}", f"result_root={tmp_path / 'result'}")
    assert_one_line_error(result, data / "train" / "kspace", "slice 1 of 'kspace' holds NaN or Inf", progress_bars=True)
    checkpoints_dir = tmp_path / "result" / "run" / "checkpoints"
    assert not checkpoints_dir.exists() or not any(checkpoints_dir.iterdir())


def test_scoring_a_fuzzed_reconstruction(data, tmp_path):
    recon = write_reconstructions(data / "leaderboard", tmp_path / "recon")
    victim = sorted((recon / "acc8").glob("*.h5"))[0]
    nan_slice(victim, "reconstruction", 1)
    before = snapshot(recon)
    result = run("leaderboard_eval.py", "-lp", str(data / "leaderboard"), "-yp", str(recon), "--csv", str(tmp_path / "s.csv"), "--no-progress")
    assert_one_line_error(result, victim.name, "slice 1")
    assert_unchanged(before, recon)
    assert not (tmp_path / "s.csv").exists()
