"""Experts per anatomy and acceleration: data subsets, routers, manifests, and the whole path on the tiny preset."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.test_training import SMALL_MODEL
from utils.data.dataset import SliceDataset
from utils.data.layout import list_volumes, parse_volume_name
from utils.data.masks import equispaced_mask
from utils.errors import UserInputError
from utils.experts.manifest import load_manifest
from utils.experts.measure import router_cases, score_router
from utils.experts.routing import RouteDecision, Router, VolumeEvidence, acceleration_guess, read_evidence, rule_anatomy_guess
from utils.experts.serve import ExpertSet, load_expert_set
from utils.experts.validate import validate_experts
from utils.inference.load import load_reconstructor
from utils.inference.reconstruct import reconstruct_dataset
from utils.learning import test_part
from utils.model.builder import build_model, load_model_config
from utils.model.checkpoint import load_checkpoint, save_checkpoint
from utils.training.build import build_datasets

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600


def _datasets(tiny_data: Path, *overrides: str) -> tuple[SliceDataset, SliceDataset]:
    cfg = compose_config("demo", [f"data.root={tiny_data}", "data.synthetic_preset=null", *overrides])
    return build_datasets(cfg, tiny_data)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)


def _names(folder: Path, anatomy: str | None = None, acceleration: int | None = None) -> list[str]:
    """File names of a folder with the given anatomy / acceleration, read from the listing."""
    return [path.name for path in list_volumes(folder)
            if anatomy in (None, parse_volume_name(path).anatomy) and acceleration in (None, parse_volume_name(path).acceleration)]


# --- data.subset -----------------------------------------------------------------------------------------------

def test_an_acceleration_subset_trains_every_slice_of_its_anatomy_at_that_acceleration(tiny_data):
    train, val = _datasets(tiny_data, "data.subset.anatomy=brain", "data.subset.acceleration=4")
    assert sorted(v.kspace_path.name for v in train.volumes) == sorted(_names(tiny_data / "train/kspace", "brain"))
    assert len(train) == sum(v.kspace.num_slices for v in train.volumes)  # each slice once, at acc4
    for index in range(len(train)):
        raw = train.read_raw(index)
        assert raw.anatomy == "brain" and raw.acceleration == 4
        with h5py.File(tiny_data / "train/kspace" / raw.fname, "r") as handle:
            file_mask = handle["mask"][()]
        if parse_volume_name(raw.fname).acceleration == 4:
            np.testing.assert_array_equal(raw.mask, file_mask)  # its own acquisition mask
        else:  # an acc8 scan, re-masked at acc4 as the duplication does it
            np.testing.assert_array_equal(raw.mask, equispaced_mask(len(file_mask), 4))
    assert [v.kspace_path.name for v in val.volumes] == _names(tiny_data / "val/kspace", "brain", 4)
    assert all(val.read_raw(i).acceleration == 4 for i in range(len(val)))


def test_a_subset_can_keep_only_the_files_named_with_its_acceleration(tiny_data):
    train, _ = _datasets(tiny_data, "data.subset.anatomy=knee", "data.subset.acceleration=8", "data.subset.include_other_acceleration=false")
    assert [v.kspace_path.name for v in train.volumes] == _names(tiny_data / "train/kspace", "knee", 8)
    assert len(train) == train.volumes[0].kspace.num_slices


def test_an_anatomy_subset_keeps_both_accelerations_and_the_duplication(tiny_data):
    train, val = _datasets(tiny_data, "data.subset.anatomy=knee")
    assert sorted(v.kspace_path.name for v in train.volumes) == sorted(_names(tiny_data / "train/kspace", "knee"))
    assert len(train) == sum(v.kspace.num_slices for v in train.volumes)  # augment=none: the file's own mask
    assert sorted(v.kspace_path.name for v in val.volumes) == sorted(_names(tiny_data / "val/kspace", "knee"))
    duplicated, _ = _datasets(tiny_data, "data.subset.anatomy=knee", "augment=recipe")
    assert len(duplicated) == 2 * len(train)
    assert sorted({duplicated.read_raw(i).acceleration for i in range(len(duplicated))}) == [4, 8]


def test_an_acceleration_only_subset_keeps_both_anatomies(tiny_data):
    train, val = _datasets(tiny_data, "data.subset.acceleration=8")
    assert len(train.volumes) == len(_names(tiny_data / "train/kspace"))
    assert {train.read_raw(i).acceleration for i in range(len(train))} == {8}
    assert sorted(v.kspace_path.name for v in val.volumes) == sorted(_names(tiny_data / "val/kspace", None, 8))


@pytest.mark.parametrize("override,key", [
    ("data.subset.anatomy=liver", "data.subset.anatomy"),
    ("data.subset.acceleration=6", "data.subset.acceleration"),
    ("data.subset.include_other_acceleration=maybe", "data.subset.include_other_acceleration"),
])
def test_bad_subset_values_name_their_key(tiny_data, override, key):
    with pytest.raises(UserInputError, match=key):
        _datasets(tiny_data, override)


def test_a_subset_that_keeps_no_file_is_one_clear_error(tiny_train_copy):
    for path in (tiny_train_copy / "train").glob("*/knee_*.h5"):
        path.unlink()
    with pytest.raises(UserInputError, match="no file is left by the selection"):
        SliceDataset(tiny_train_copy / "train", keep_volume=lambda name: name.anatomy == "knee")


# --- routers ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [320, 344, 368, 372, 384, 392, 396, 400, 480])
def test_challenge_masks_route_to_their_acceleration_and_are_sure(width):
    for acceleration in (4, 8):
        guess = acceleration_guess(equispaced_mask(width, acceleration))
        assert guess.value == acceleration and guess.sure, guess


def test_a_random_mask_with_an_acc8_spacing_or_a_fraction_outside_every_family_is_unsure():
    width = 400  # (the fraction boundary this test once probed is gone: tests/test_routing.py covers the new rule)
    almost_full = np.ones(width, np.float32)
    almost_full[:10] = 0
    assert acceleration_guess(almost_full).value == 4 and not acceleration_guess(almost_full).sure
    rng = np.random.default_rng(0)  # a random-family mask with fewer lines than the fullest acc8 masks
    sparse_random = equispaced_mask(width, width)  # the centre block (and column 0) only
    outside = np.flatnonzero(sparse_random == 0)
    sparse_random[rng.choice(outside, size=80 - int(sparse_random.sum()), replace=False)] = 1
    guess = acceleration_guess(sparse_random)  # mean gap 7.8 reads acc8, its random line count acc4, which it keeps
    assert guess.value == 4 and not guess.sure and "irregularly spaced" in guess.why
    regular = equispaced_mask(width, 8, num_low_frequencies=round(0.10 * width))  # the fullest acc8 challenge mask
    assert acceleration_guess(regular).value == 8 and acceleration_guess(regular).sure


def test_the_rule_router_routes_every_tiny_volume_under_its_own_mask(tiny_data):
    router = Router("rule")
    folders = [tiny_data / "train/kspace", tiny_data / "val/kspace", tiny_data / "leaderboard/acc4/kspace", tiny_data / "leaderboard/acc8/kspace"]
    for path in (path for folder in folders for path in list_volumes(folder)):
        decision = router.route(read_evidence(path))
        name = parse_volume_name(path)
        assert (decision.anatomy, decision.acceleration) == (name.anatomy, name.acceleration), path
        assert decision.unsure() == [], (path, decision)


def test_the_rule_router_on_augmentation_masks(tiny_data):
    cases = [case for case in router_cases(tiny_data / "val", augmented_draws=2, seed=1) if case.kind != "file mask"]
    score = score_router(Router("rule"), cases)
    assert score.cases == 4 * 5 * 2 * 2
    for kind, (count, route, anatomy, acceleration, _, _) in score.by_kind.items():
        assert anatomy == count, kind  # H and the intensity agree on every synthetic volume
        if kind != "random":  # the random family's line count varies; the others are deterministic in range
            assert acceleration == count, kind


def test_a_disagreeing_height_makes_the_anatomy_unsure(tiny_data):
    brain = read_evidence(list_volumes(tiny_data / "val/kspace")[0])
    assert parse_volume_name(brain.name).anatomy == "brain" and rule_anatomy_guess(brain).sure
    relabelled = VolumeEvidence(brain.name, 640, brain.width, brain.mask, brain.zero_filled)  # fastMRI brain: H = 640
    guess = rule_anatomy_guess(relabelled)
    assert not guess.sure and "H says knee, the intensity says brain" in guess.why
    unknown = rule_anatomy_guess(VolumeEvidence(brain.name, 700, brain.width, brain.mask, brain.zero_filled))
    assert not unknown.sure and unknown.value == "brain"
    decision = Router("rule").route(relabelled)
    assert decision.unsure() and decision.unsure()[0].startswith("anatomy: ")


def test_unsure_reports_only_what_the_expert_set_routes_on(tmp_path):
    paths = {name: tmp_path / f"{name}.pt" for name in ("a", "b")}
    for path in paths.values():
        path.touch()
    four = tmp_path / "four.yaml"
    four.write_text("experts: {brain_acc4: a.pt, brain_acc8: b.pt, knee_acc4: a.pt, knee_acc8: b.pt}\n")
    two = tmp_path / "two.yaml"
    two.write_text("experts: {brain: a.pt, knee: b.pt}\n")
    decision = RouteDecision("brain", 4, None, "sampled fraction 0.22 near the boundary", "details")
    assert ExpertSet(load_manifest(four), Router("rule"), {}).unsure(decision) == ["acceleration: sampled fraction 0.22 near the boundary"]
    assert ExpertSet(load_manifest(two), Router("rule"), {}).unsure(decision) == []


# --- manifests -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("router: rule\nexperts: {brain: a.pt}\n", "no expert covers knee_acc4, knee_acc8"),
    ("experts: {brain: a.pt, brain_acc4: b.pt, knee: a.pt}\n", "experts.brain and experts.brain_acc4 both cover brain_acc4"),
    ("experts: {all: missing.pt}\n", "experts.all names .*missing.pt, which does not exist"),
    ("experts: {brain: a.pt, liver: a.pt}\n", "experts.liver is not a route"),
    ("router: oracle\nexperts: {all: a.pt}\n", "router: 'oracle' is not a router"),
    ("router: classifier\nexperts: {brain: a.pt, knee: b.pt}\n", "router: classifier needs classifier"),
    ("router: rule\nclassifier: nope.pt\nexperts: {all: a.pt}\n", "classifier names .*nope.pt, which does not exist"),
    ("routes: {all: a.pt}\n", "unknown key 'routes'"),
    ("- a.pt\n", "is not a mapping"),
    ("experts: [a.pt\n", "is not readable YAML"),
])
def test_broken_manifests_are_refused_in_one_sentence_naming_the_manifest(tmp_path, text, message):
    (tmp_path / "a.pt").touch()
    (tmp_path / "b.pt").touch()
    manifest = tmp_path / "experts.yaml"
    manifest.write_text(text)
    with pytest.raises(UserInputError, match=message) as raised:
        load_manifest(manifest)
    assert str(raised.value).startswith(str(manifest)) and "\n" not in str(raised.value)


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    (tmp_path / "set" / "brain").mkdir(parents=True)
    (tmp_path / "set" / "brain" / "best.pt").touch()
    (tmp_path / "shared.pt").touch()
    manifest = tmp_path / "set" / "experts.yaml"
    manifest.write_text("experts:\n  brain: brain/best.pt\n  knee: ../shared.pt\n")
    loaded = load_manifest(manifest)
    assert loaded.experts == {"brain": tmp_path / "set/brain/best.pt", "knee": tmp_path / "set/../shared.pt"}
    assert loaded.route_for("knee", 8) == "knee" and loaded.splits_anatomy and not loaded.splits_acceleration


def _untrained_checkpoint(path: Path, seed: int, subset: dict | None = None) -> Path:
    config = OmegaConf.to_container(load_model_config("demo_varnet", SMALL_MODEL), resolve=True)
    torch.manual_seed(seed)
    save_checkpoint(path, {"model": build_model(config).state_dict(), "model_config": config, "epoch": 0,
                           "config": {"data": {"subset": subset or {"anatomy": None, "acceleration": None}}}})
    return path


def test_an_expert_trained_on_another_subset_is_refused(tmp_path):
    _untrained_checkpoint(tmp_path / "knee.pt", 0, {"anatomy": "knee", "acceleration": 8})
    _untrained_checkpoint(tmp_path / "shared.pt", 1)
    manifest = tmp_path / "experts.yaml"
    manifest.write_text("experts: {brain_acc4: knee.pt, brain_acc8: shared.pt, knee: shared.pt}\n")
    with pytest.raises(UserInputError, match=r"experts.brain_acc4 names .*knee.pt, trained on knee_acc8 only .* brain_acc4"):
        load_expert_set(manifest, torch.device("cpu"))
    manifest.write_text("experts: {knee_acc8: knee.pt, knee_acc4: shared.pt, brain: shared.pt}\n")
    experts = load_expert_set(manifest, torch.device("cpu"))
    assert experts.experts["knee_acc4"] is experts.experts["brain"]  # one checkpoint named twice is loaded once


def test_reconstruct_refuses_a_manifest_with_a_missing_checkpoint_before_writing(tiny_data, tmp_path):
    _untrained_checkpoint(tmp_path / "brain.pt", 0)
    manifest = tmp_path / "experts.yaml"
    manifest.write_text("router: rule\nexperts:\n  brain: brain.pt\n  knee: knee/best_model.pt\n")
    run = _run("reconstruct_from_ckpt.py", "-c", str(manifest), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "--no-progress")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: {manifest}: experts.knee names {tmp_path / 'knee/best_model.pt'}, which does not exist"]
    assert not (tmp_path / "reconstructions_leaderboard").exists()


def test_train_experts_runs_one_final_main_per_route_with_its_subset(tmp_path):
    run = _run("-m", "utils.tools.train_experts", "configs/experts/four.yaml", "--config-name=demo", f"result_root={tmp_path}",
               "training.epochs=1", "--dry-run")
    assert run.returncode == 0, run.stderr
    commands = [line for line in run.stdout.splitlines() if "] expert " in line]
    assert len(commands) == 4
    for line, (anatomy, acceleration) in zip(commands, [("brain", 4), ("brain", 8), ("knee", 4), ("knee", 8)]):
        assert f"data.subset.anatomy={anatomy} data.subset.acceleration={acceleration}" in line
        assert line.endswith(f"result_root={tmp_path / 'experts4'} exp_name={anatomy}_acc{acceleration}")
        assert "training.epochs=1" in line and "--config-name=demo" in line
    assert f"would write {tmp_path / 'experts4' / 'experts.yaml'}" in run.stdout
    refused = _run("-m", "utils.tools.train_experts", "configs/experts/two.yaml", "data.subset.anatomy=brain", "--dry-run")
    assert refused.returncode == 2 and "data.subset" in refused.stderr


@pytest.mark.parametrize("text, message", [
    ("name: s\nexperts: {brain_acc4: [], brain_acc8: [], knee: []}\n", None),  # a valid set, for contrast
    ("name: s\nexperts: {brain: [], knee_acc4: []}\n", "no expert covers knee_acc8"),
    ("name: s\nexperts: {all: [], knee: []}\n", "experts.all and experts.knee both cover knee_acc4"),
    ("name: s\nrouter: oracle\nexperts: {all: []}\n", "router: 'oracle' is not a router"),
    ("name: s\nexperts: {liver: []}\n", "experts.liver is not a route"),
    ("name: ../up\nexperts: {all: []}\n", "name must be a folder name"),
])
def test_broken_expert_sets_are_refused_before_any_training(tmp_path, text, message):
    spec = tmp_path / "set.yaml"
    spec.write_text(text)
    run = _run("-m", "utils.tools.train_experts", str(spec), f"result_root={tmp_path}", "--dry-run")
    if message is None:
        assert run.returncode == 0, run.stderr
        return
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {spec}: ") and message in run.stderr and len(run.stderr.strip().splitlines()) == 1


# --- the classifier router and the whole path (slow) ------------------------------------------------------------

@pytest.mark.slow
def test_the_classifier_trains_reports_its_accuracy_and_routes_with_the_rule_as_fallback(tiny_data, tmp_path):
    from utils.experts.classifier import load_classifier
    from utils.tools.train_router import evaluate, load_split

    out = tmp_path / "classifier.pt"
    run = _run("-m", "utils.tools.train_router", "--data", str(tiny_data), "--out", str(out), "--steps", "100")
    assert run.returncode == 0, run.stderr
    assert set(torch.load(out, weights_only=True)) >= {"format", "model", "channels", "classes", "val_slice_accuracy"}
    classifier, record = load_classifier(out)
    recomputed = evaluate(classifier, *load_split(tiny_data / "val" / "image"))
    assert record["val_slice_accuracy"] == pytest.approx(recomputed["val_slice_accuracy"])
    assert f"validation accuracy: {record['val_slice_accuracy']:.4f} of {record['val_slices']} slices" in run.stdout
    train_inputs, train_labels, _ = load_split(tiny_data / "train" / "image")
    assert bool((classifier(train_inputs).argmax(-1) == train_labels).all())  # it learned its training slices
    cases = list(router_cases(tiny_data / "val", augmented_draws=1))
    for router in (Router("classifier", classifier), Router("rule", classifier)):
        score = score_router(router, cases)
        assert sum(row[2] for row in score.by_kind.values()) == score.cases  # anatomy right, by itself or by the fallback


@pytest.mark.slow
def test_two_experts_train_reconstruct_through_the_manifest_and_score(tiny_data, tmp_path):
    result = tmp_path / "result"
    trained = _run("-m", "utils.tools.train_experts", "configs/experts/two.yaml", "--config-name=demo", f"data.root={tiny_data}",
                   "data.synthetic_preset=null", f"result_root={result}", "training.epochs=1", "logger.mode=disabled",
                   "data.num_workers=0", "training.figures=false", *SMALL_MODEL)
    assert trained.returncode == 0, trained.stderr[-3000:]
    manifest = result / "experts2" / "experts.yaml"
    assert load_manifest(manifest).experts == {route: result / "experts2" / route / "checkpoints/best_model.pt" for route in ("brain", "knee")}

    out = tmp_path / "recon"
    run = _run("reconstruct_from_ckpt.py", "-c", str(manifest), "-p", str(tiny_data / "leaderboard"), "-g", "-1", "-o", str(out),
               "--num_workers", "0", "--no-progress")
    assert run.returncode == 0, run.stderr
    for route in ("brain", "knee"):  # tiny: 1 volume of each anatomy per acceleration, 2 slices each
        assert f"  {route}: 2 volumes, 4 slices" in run.stdout
    assert "routing: " in run.stdout and "0 unsure; 4 of 4 agree with the file names" in run.stdout
    assert "budget with experts: load" in run.stdout and "within the 3600 s budget" in run.stdout

    for route in ("brain", "knee"):  # every acc4 volume was reconstructed by its own expert (acc8: the harness, below)
        expert = load_reconstructor(result / "experts2" / route / "checkpoints/best_model.pt", torch.device("cpu"))
        own = SliceDataset(tiny_data / "leaderboard/acc4", expert.transform, kspace_only=True, keep_volume=lambda name: name.anatomy == route)
        reconstruct_dataset(expert, own, tmp_path / "own", torch.device("cpu"), progress=False)
        (path,) = (tmp_path / "own").glob(f"{route}_*.h5")
        with h5py.File(path, "r") as mine, h5py.File(out / "acc4" / path.name, "r") as routed:
            reference = routed["reconstruction"][()]
            np.testing.assert_allclose(mine["reconstruction"][()], reference, rtol=0, atol=1e-6 * reference.max())

    harness = test_part.load_model(SimpleNamespace(exp_dir=result / "experts2"), "cpu")  # the 2026 contract, same routes
    assert isinstance(harness, ExpertSet)
    for path in list_volumes(tiny_data / "leaderboard" / "acc8" / "kspace"):
        ctx = test_part.prep_volume(None, path, "cpu")
        images = np.stack([test_part.recon_slice(harness, ctx, s).numpy() for s in range(ctx["num_slices"])])
        assert ctx["route"] == parse_volume_name(path).anatomy
        with h5py.File(out / "acc8" / path.name, "r") as routed:
            np.testing.assert_allclose(images, routed["reconstruction"][()], rtol=0, atol=1e-6 * images.max())

    validation = validate_experts(load_expert_set(manifest, torch.device("cpu")), tiny_data / "val", torch.device("cpu"))
    for route in ("brain", "knee"):  # routed validation = each expert's own validation in training (its best_metric)
        best = load_checkpoint(result / "experts2" / route / "checkpoints/best_model.pt")["best_metric"]
        assert (validation.mean(f"{route}_acc4") + validation.mean(f"{route}_acc8")) / 2 == pytest.approx(best, abs=1e-6)
        assert dict(validation.served[f"{route}_acc8"]) == {route: 1}

    score = _run("leaderboard_eval.py", "-lp", str(tiny_data / "leaderboard"), "-yp", str(out), "--no-progress")
    assert score.returncode == 0 and score.stdout.startswith("Leaderboard SSIM : "), score.stderr
    assert 0.3 < float(score.stdout.splitlines()[0].split(":")[1]) < 1.0
    shutil.rmtree(result)
