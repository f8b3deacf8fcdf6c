"""Fuzzing every gate in process: hundreds of broken files, each either accepted or refused in one line.

A seeded corpus (:mod:`tests.fuzz_corpus`) mutates valid files. For every case the gate either succeeds (the
mutation left the file valid, e.g. a flipped byte in a tensor's data) or raises a one-line
:class:`~utils.errors.UserInputError` that names the file; any other exception, a traceback, a payload that ran
(the marker file), or a file written by a refused import fails the test. ``-m fuzz`` runs more seeds.
"""
from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.fuzz_corpus import BYTE_MUTATORS, H5_MUTATORS, PICKLE_MUTATORS, YAML_MUTATORS, cases, marker_path
from tests.test_import_checkpoint import fastmri_varnet_state_dict
from tests.test_training import SMALL_MODEL
from utils.data.dataset import SliceDataset
from utils.errors import UserInputError
from utils.evaluation.leaderboard import score_leaderboard
from utils.experts.classifier import AnatomyClassifier, load_classifier, save_classifier
from utils.experts.manifest import load_manifest
from utils.inference.load import load_reconstructor
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import save_checkpoint
from utils.tools.import_checkpoint import import_checkpoint
from utils.tools.train_experts import load_expert_set_spec
from utils.training.resume import _fresh_state

FAST_CASES, FUZZ_SEEDS = 60, (1, 2, 3, 4)
CPU = torch.device("cpu")


def expect_gate(gate: Callable[[Path], object], path: Path, accept_valid: bool = True) -> str:
    """Run ``gate(path)``: success, or a UserInputError of one line naming ``path``; returns the outcome."""
    try:
        gate(path)
    except UserInputError as err:
        message = str(err)
        assert "\n" not in message.strip(), f"{path.name}: more than one line: {message!r}"
        assert path.name in message, f"{path.name} not named in: {message}"
        return "refused"
    assert accept_valid, f"{path.name} was accepted"
    return "accepted"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Valid files of each kind: a checkpoint of the small model, a fastMRI state dict, a classifier."""
    folder = tmp_path_factory.mktemp("sources")
    config = OmegaConf.to_container(load_model_config("demo_varnet", SMALL_MODEL), resolve=True)
    torch.manual_seed(0)
    save_checkpoint(folder / "ours.pt", {"model": build_model(config).state_dict(), "model_config": config, "epoch": 1, "config": {}})
    torch.save({"model": fastmri_varnet_state_dict(1, 4, 2, 2, 2), "epoch": 3, "args": types.SimpleNamespace(lr=1e-3)}, folder / "theirs.pt")
    save_classifier(folder / "classifier.pt", AnatomyClassifier((2, 2, 2, 2)), {"steps": 1})
    return {path.stem: path for path in folder.iterdir()}


def _corpus(source: Path, tmp_path: Path, mutators: dict, count: int, seed: int) -> list[tuple[str, Path]]:
    folder = tmp_path / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    return list(cases(source, folder, mutators, count, seed))


def _fuzz_checkpoints(sources: dict[str, Path], tmp_path: Path, count: int, seed: int) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    mutators = {**BYTE_MUTATORS, **PICKLE_MUTATORS}
    gates = {
        "ours": [lambda path: load_reconstructor(path, CPU),
                 lambda path: _fresh_state(OmegaConf.create({"training": {"init_from": str(path)}}), build_model(torch.load(sources["ours"], weights_only=True)["model_config"]))],
        "theirs": [lambda path: import_checkpoint(path, path.with_suffix(".imported.pt"))],
        "classifier": [lambda path: load_classifier(path)],
    }
    for kind, kind_gates in gates.items():
        for name, path in _corpus(sources[kind], tmp_path / kind, mutators, count, seed):
            for gate in kind_gates:
                outcome = expect_gate(gate, path)
                outcomes[f"{name}:{outcome}"] = outcomes.get(f"{name}:{outcome}", 0) + 1
            if outcome == "refused":
                assert not path.with_suffix(".imported.pt").exists(), "a refused import wrote its output"
            assert not marker_path(path.parent).exists(), f"{path.name}: a payload ran"
    return outcomes


def test_checkpoint_gates_refuse_broken_files_in_one_line(sources, tmp_path):
    outcomes = _fuzz_checkpoints(sources, tmp_path, FAST_CASES, seed=0)
    assert sum(n for key, n in outcomes.items() if key.endswith("refused")) > FAST_CASES  # most mutations break the file


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_checkpoint_gates_under_more_seeds(sources, tmp_path, seed):
    _fuzz_checkpoints(sources, tmp_path, 4 * FAST_CASES, seed)


# ---------------------------------------------------------------------------------------------- h5


def _read_every_slice(split: Path, kspace_only: bool) -> None:
    dataset = SliceDataset(split, kspace_only=kspace_only)
    for index in range(len(dataset)):
        dataset[index]
    dataset.close()


def _fuzz_h5(tiny_data: Path, tmp_path: Path, count: int, seed: int) -> None:
    """Each case breaks one file of a copy of a split (train, a leaderboard folder) or of a reconstruction folder."""
    rng = np.random.default_rng(seed)
    recon_source = tmp_path / "recon_source"
    for acceleration in (4, 8):
        (recon_source / f"acc{acceleration}").mkdir(parents=True)
        for target in (tiny_data / "leaderboard" / f"acc{acceleration}" / "image").glob("*.h5"):
            import h5py

            with h5py.File(target, "r") as handle, h5py.File(recon_source / f"acc{acceleration}" / target.name, "w") as out:
                out["reconstruction"] = handle["image_label"][()]
    for index in range(count):
        case = tmp_path / f"case{index}"
        kind = ("train", "leaderboard", "recon")[index % 3]
        if kind == "recon":
            shutil.copytree(recon_source, case / "recon")
            victim = sorted((case / "recon").rglob("*.h5"))[int(rng.integers(4))]
            gate = lambda path: score_leaderboard(tiny_data / "leaderboard", case / "recon", progress=False)  # noqa: E731
        else:
            split = case / ("train" if kind == "train" else "acc4")  # a leaderboard folder is named by its acceleration
            shutil.copytree(tiny_data / ("train" if kind == "train" else "leaderboard/acc4"), split)
            files = sorted(split.rglob("*.h5"))
            victim = files[int(rng.integers(len(files)))]
            gate = lambda path, split=split, only=kind != "train": _read_every_slice(split, only)  # noqa: E731
        names = sorted(H5_MUTATORS)
        H5_MUTATORS[names[int(rng.integers(len(names)))]](victim, np.random.default_rng([seed, index]))
        expect_gate(gate, victim)


def test_h5_gates_refuse_broken_files_in_one_line(tiny_data, tmp_path):
    _fuzz_h5(tiny_data, tmp_path, 30, seed=0)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_h5_gates_under_more_seeds(tiny_data, tmp_path, seed):
    _fuzz_h5(tiny_data, tmp_path, 90, seed)


# ---------------------------------------------------------------------------------------------- YAML


def _fuzz_yaml(tmp_path: Path, count: int, seed: int) -> None:
    (tmp_path / "a.pt").touch()
    manifest, expert_set = tmp_path / "experts.yaml", tmp_path / "set.yaml"
    manifest.write_text("router: rule\nexperts: {all: a.pt}\n")
    expert_set.write_text("name: x\nconfig_name: demo\nexperts: {brain: [], knee: []}\n")
    for source, gate in ((manifest, load_manifest), (expert_set, load_expert_set_spec)):
        for _, path in cases(source, tmp_path, YAML_MUTATORS, count, seed):
            expect_gate(gate, path)
            assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_yaml_gates_refuse_broken_files_in_one_line(tmp_path):
    _fuzz_yaml(tmp_path, 40, seed=0)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_yaml_gates_under_more_seeds(tmp_path, seed):
    _fuzz_yaml(tmp_path, 160, seed)
