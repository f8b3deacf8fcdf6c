"""Ensembles in expert manifests: lists of checkpoints, checked, loaded once, averaged, timed, reported.
(On data, through reconstruct_from_ckpt.py and the 2026 harness: tests/test_tta_paths.py.)"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import default_collate

from tests.test_inference_timing import batch_of
from tests.test_training import SMALL_MODEL
from tests.test_tta import SleepingModel, _inputs
from utils.data.masks import equispaced_mask
from utils.data.transforms import ApplyFileMask, RawSlice
from utils.errors import UserInputError
from utils.experts.manifest import load_manifest, manifest_text
from utils.experts.serve import ExpertsServed, load_expert_set, routing_report
from utils.inference.ensemble import Ensemble, model_inputs
from utils.inference.load import Reconstructor, load_reconstructor
from utils.inference.reconstruct import ModelClock
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import save_checkpoint

CPU = torch.device("cpu")
SCC_2 = {"method": "scc", "num_coils": 2, "calibration_lines": 24, "window": 1}


def small_checkpoint(path: Path, seed: int, compressor: dict | None = None, subset: dict | None = None) -> Path:
    """An untrained small demo_varnet (seed ``seed``), with the coil compression and data.subset it 'trained' with."""
    config = OmegaConf.to_container(load_model_config("demo_varnet", SMALL_MODEL), resolve=True)
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():  # open the identity_init gates, so that two seeds give two different networks
        for name, parameter in model.named_parameters():
            if name.endswith("alpha"):
                parameter.fill_(0.1)
    run_config = {"data": {"subset": subset or {"anatomy": None, "acceleration": None}}, "compressor": compressor}
    save_checkpoint(path, {"model": model.state_dict(), "model_config": config, "epoch": 0, "config": run_config})
    return path


def _manifest(folder: Path, text: str) -> Path:
    path = folder / "experts.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ensemble")
    small_checkpoint(folder / "a.pt", 0)
    small_checkpoint(folder / "b.pt", 1)
    small_checkpoint(folder / "c_scc.pt", 2, SCC_2)
    shutil.copy(folder / "a.pt", folder / "a_copy.pt")
    return folder


def test_a_route_may_name_a_list_and_the_manifest_reads_it_back(checkpoints):
    manifest = _manifest(checkpoints, "tta: flip\nexperts:\n  brain: [a.pt, b.pt]\n  knee: a.pt\n")
    loaded = load_manifest(manifest)
    assert loaded.experts == {"brain": (checkpoints / "a.pt", checkpoints / "b.pt"), "knee": checkpoints / "a.pt"}
    assert loaded.checkpoints("knee") == (checkpoints / "a.pt",) and loaded.tta == "flip"
    text = manifest_text("rule", None, loaded.experts, checkpoints, tta=loaded.tta)
    assert "  brain: [a.pt, b.pt]\n" in text and "tta: flip\n" in text
    assert load_manifest(_manifest(checkpoints, text)) == loaded


@pytest.mark.parametrize("text,message", [
    ("experts: {all: []}\n", "experts.all is an empty list; an ensemble names at least one checkpoint"),
    ("experts: {all: [a.pt, 3]}\n", r"experts.all\[1\] must be a checkpoint path \(relative to the manifest\), got 3$"),
    ("experts: {all: [a.pt, [b.pt]]}\n", r"experts.all\[1\] must be a checkpoint path .*, got \['b.pt'\]$"),
    ("experts: {brain: a.pt, knee: [a.pt, missing.pt]}\n", r"experts.knee\[1\] names .*missing.pt, which does not exist$"),
    ("experts: {brain: [a.pt], brain_acc4: [b.pt], knee: a.pt}\n", "experts.brain and experts.brain_acc4 both cover brain_acc4"),
    ("tta: rotate\nexperts: {all: a.pt}\n", "tta: 'rotate' is not a test-time augmentation; choose none or flip"),
    ("tta: true\nexperts: {all: a.pt}\n", "tta: True is not a test-time augmentation"),
])
def test_broken_ensembles_are_refused_in_one_line_naming_the_manifest(checkpoints, tmp_path, text, message):
    for name in ("a.pt", "b.pt"):
        (tmp_path / name).touch()
    manifest = _manifest(tmp_path, text)
    with pytest.raises(UserInputError, match=message) as raised:
        load_manifest(manifest)
    assert str(raised.value).startswith(str(manifest)) and "\n" not in str(raised.value)


def _output(model, width: int = 392) -> torch.Tensor:
    masked_kspace, mask = _inputs(width, height=16, coils=4)
    with torch.no_grad():
        return model(masked_kspace, mask)


def test_an_ensemble_of_one_checkpoint_twice_is_that_checkpoint(checkpoints):
    single = _output(load_reconstructor(checkpoints / "a.pt", CPU))
    twice = load_expert_set(_manifest(checkpoints, "experts: {all: [a.pt, a.pt]}\n"), CPU)
    ensemble = twice.experts["all"]
    assert len(ensemble.members) == 1 and ensemble.counts == [2] and twice.checkpoints_loaded == 1  # loaded and run once
    assert torch.equal(_output(ensemble), single)
    copies = load_expert_set(_manifest(checkpoints, "experts: {all: [a.pt, a_copy.pt]}\n"), CPU)
    assert copies.checkpoints_loaded == 2 and torch.equal(_output(copies.experts["all"]), single)


def test_an_ensemble_of_two_checkpoints_is_the_mean_of_their_outputs(checkpoints):
    a, b = (_output(load_reconstructor(checkpoints / name, CPU)) for name in ("a.pt", "b.pt"))
    assert (a - b).abs().max() > 1e-3 * a.max()  # two different networks
    experts = load_expert_set(_manifest(checkpoints, "experts: {brain: [a.pt, b.pt], knee: b.pt}\n"), CPU)
    assert experts.checkpoints_loaded == 2 and experts.experts["knee"] is experts.experts["brain"].members[1]
    torch.testing.assert_close(_output(experts.experts["brain"]), (a + b) / 2, rtol=0, atol=1e-6 * float(a.max()))


def _raw_slice(width: int = 392, coils: int = 4) -> RawSlice:
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((coils, 32, width)) + 1j * rng.standard_normal((coils, 32, width))).astype(np.complex64)
    return RawSlice(kspace, equispaced_mask(width, 4), None, float("nan"), "brain_test1.h5", 0, "brain", 4)


def test_each_member_keeps_its_own_coil_compression(checkpoints):
    experts = load_expert_set(_manifest(checkpoints, "experts: {all: [a.pt, c_scc.pt, b.pt]}\n"), CPU)
    ensemble = experts.experts["all"]
    raw = _raw_slice()
    sample = ensemble.sample(raw)
    assert [tuple(t.shape) for t in sample.masked_kspace] == [(4, 32, 392, 2), (2, 32, 392, 2)]  # a and b share one input
    batch = default_collate([sample])  # as the DataLoader of reconstruct_from_ckpt.py collates it
    with torch.no_grad():
        together = ensemble(model_inputs(batch.masked_kspace, CPU), batch.mask)
        alone = []
        for name in ("a.pt", "c_scc.pt", "b.pt"):
            member = load_reconstructor(checkpoints / name, CPU)
            own = member.sample(raw)
            alone.append(member(own.masked_kspace[None], own.mask[None]))
    assert alone[1].shape == (1, 384, 384)
    torch.testing.assert_close(together, sum(alone) / 3, rtol=0, atol=1e-6 * float(together.max()))


def _fake_member(name: str, model: torch.nn.Module) -> Reconstructor:
    return Reconstructor(model, ApplyFileMask(), Path(name), 0)


def test_every_member_is_the_slices_model_time():
    first, second = SleepingModel(0.02), SleepingModel(0.02)
    ensemble = Ensemble([_fake_member("a.pt", first), _fake_member("b.pt", second)])
    clock = ModelClock(CPU, warmup_slices=1)
    for _ in range(4):
        clock.run(ensemble, batch_of(1))
    assert first.calls == second.calls == 4 and clock.slices == 3 and clock.ms_per_slice >= 2 * 20


def test_a_member_with_another_output_shape_is_named():
    class Wrong(torch.nn.Module):
        def forward(self, masked_kspace, mask):
            return torch.zeros(masked_kspace.shape[0], 320, 320)

    ensemble = Ensemble([_fake_member("good.pt", SleepingModel(0)), _fake_member("wrong.pt", Wrong())])
    with pytest.raises(UserInputError, match=r"^wrong.pt: gives outputs of shape \(2, 320, 320\), not \(2, 384, 384\)"):
        ensemble(torch.zeros(2, 2, 8, 8, 2), torch.ones(2, 1, 1, 8, 1))


def test_every_member_must_cover_its_route(checkpoints, tmp_path):
    small_checkpoint(tmp_path / "knee8.pt", 3, subset={"anatomy": "knee", "acceleration": 8})
    shutil.copy(checkpoints / "a.pt", tmp_path / "a.pt")
    manifest = _manifest(tmp_path, "experts: {brain: a.pt, knee: [a.pt, knee8.pt]}\n")
    with pytest.raises(UserInputError, match=r"experts.knee names .*knee8.pt, trained on knee_acc8 only .* knee_acc4"):
        load_expert_set(manifest, CPU)


def test_the_report_says_which_checkpoints_served(checkpoints):
    experts = load_expert_set(_manifest(checkpoints, "tta: flip\nexperts: {brain: [a.pt, b.pt], knee: a.pt}\n"), CPU)
    assert experts.tta == "flip" and all(m.tta == "flip" for m in experts.experts["brain"].members)
    report = routing_report(experts, ExpertsServed(), 1.0, ModelClock(CPU))
    assert "router rule, test-time augmentation flip" in report
    assert f"  brain: 0 volumes, 0 slices (ensemble of 2: {checkpoints / 'a.pt'}, {checkpoints / 'b.pt'})" in report
    assert f"  knee: 0 volumes, 0 slices ({checkpoints / 'a.pt'})" in report
    assert load_expert_set(experts.manifest, CPU, tta="none").experts["knee"].tta == "none"  # --tta overrides the manifest
