"""Bad input to final_main.py: data, config and checkpoint mistakes end in one line, exit 2, nothing overwritten."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.bad_inputs import REPO, assert_one_line_error, assert_unchanged, checkpoints, corrupt, data, edit_h5, replace_dataset, run, snapshot, truncate
from tests.test_training import SMALL_MODEL

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
    "unknown mask type": (["augment=recipe", "+augment.mask.weights.poisson=1.0"], ["augment config", "poisson"]),
    "even GCC window": (["compressor=gcc", "compressor.window=4"], ["compressor config", "odd window"]),
    "unknown AMP mode": (["training.amp=fp8"], ["training.amp", "fp8"]),
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
    from utils.training.build import check_config

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




@pytest.mark.parametrize("arguments", [["data.root=/nonexistent/Data"], ["--config-name=no_such_recipe"]], ids=["data", "hydra"])
def test_mri_debug_shows_the_traceback_of_final_main(arguments, tmp_path):
    result = run(*_train_command(arguments), f"result_root={tmp_path / 'result'}", debug=True)
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserInputError" in result.stderr
