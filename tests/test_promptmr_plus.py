"""PromptMR+: equal to the 2025 winner's code (golden), its importer, builder checks, sizes and numerics.

The golden file (``../shared/golden/promptmr_plus.pt``, see its README) holds the entry's state dict, inputs and
the entry's own float32 outputs. Its weights go through ``python -m utils.tools.import_checkpoint``; the model is
rebuilt from the written checkpoint's model config by the one builder.

Why float64 for the 1.5e-6 bound: the entry's float32 outputs are themselves 0.8e-6 to 1.2e-6 (of their
maximum) away from the exact maths of this tiny network (its float64 run), and two float32 computations whose
convolutions round differently land up to about twice that apart (1.2e-6 to 1.8e-6 measured on a 2-core CPU,
moving with the thread count). Run in float64, this model is the exact maths, so what remains is the entry's
own rounding, the same on every machine. The float32 run is held to 3e-6.
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from utils.errors import UserInputError
from utils.model import PromptMRPlus, build_model, load_model_config
from utils.tools.import_checkpoint import import_checkpoint

REPO = Path(__file__).resolve().parents[1]
GOLDEN = "promptmr_plus.pt"
CASES = ("square_symmetric_acs", "brain_like_acs", "odd_dims", "brain_width_crop")
TOLERANCE = 1.5e-6
FLOAT32_TOLERANCE = 3e-6
TINY = dict(num_cascades=3, n_feat0=4, feature_dim=[4, 6, 8], prompt_dim=[2, 3, 4], sens_n_feat0=2,
            sens_feature_dim=[2, 3, 4], sens_prompt_dim=[1, 2, 2], prompt_size=[4, 2, 2], n_enc_cab=[1, 2, 1],
            n_dec_cab=[1, 1, 1], n_bottleneck_cab=1, n_history=2, ca_reduction=2)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


# ------------------------------------------------------------------------------------------ golden
@pytest.fixture(scope="module")
def golden(golden_dir) -> dict:
    return torch.load(golden_dir / GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def imported(golden, tmp_path_factory) -> PromptMRPlus:
    """The golden state dict through the import command, rebuilt by the builder from the checkpoint's config."""
    folder = tmp_path_factory.mktemp("promptmr")
    source, out = folder / "entry_state_dict.pt", folder / "imported.pt"
    torch.save(golden["state_dict"], source)
    command = [sys.executable, "-m", "utils.tools.import_checkpoint", str(source), "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # torch.load, not utils.training.checkpoint.load_checkpoint: that one adds FeatureVarNet's legacy options
    # (acs_lines, ...) to every model config without acs_lines, which PromptMR+ rightly refuses
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["model_config"]["_target_"] == "utils.model.PromptMRPlus"
    model = build_model(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"], strict=True)
    return model.eval()


def _run_recording(model: PromptMRPlus, case: dict, dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
    """The output and the intermediate sensitivity maps and cascade images of ``model`` in ``dtype``."""
    model = copy.deepcopy(model).to(dtype)
    seen: dict = {"cascade_images": []}
    model.sens_net.register_forward_hook(lambda module, args, output: seen.__setitem__("sens_maps", output))
    for cascade in model.cascades:
        cascade.register_forward_hook(lambda module, args, output: seen["cascade_images"].append(output[0]))
    with torch.no_grad():
        output = model(case["masked_kspace"].to(dtype), case["mask"])
    return output, seen


@pytest.mark.parametrize("case", CASES)
def test_imported_model_reproduces_the_entrys_outputs(imported, golden, case):
    expected = golden["cases"][case]
    output, seen = _run_recording(imported, expected, torch.float64)
    assert output.shape == expected["output"].shape
    assert relative_error(output, expected["output"]) <= TOLERANCE
    if "sens_maps" in expected:
        assert relative_error(seen["sens_maps"], expected["sens_maps"]) <= TOLERANCE
        assert len(seen["cascade_images"]) == len(expected["cascade_images"])
        for image, reference in zip(seen["cascade_images"], expected["cascade_images"]):
            assert relative_error(image, reference[0]) <= TOLERANCE


@pytest.mark.parametrize("case", CASES)
def test_imported_model_in_float32_is_within_float32_rounding(imported, golden, case):
    expected = golden["cases"][case]
    output, _ = _run_recording(imported, expected, torch.float32)
    assert output.dtype == torch.float32
    assert relative_error(output, expected["output"]) <= FLOAT32_TOLERANCE


def test_a_reversed_history_departs_from_the_entry(imported, golden):
    """The golden cases see the history's order (3rd and 4th cascades run on a full history)."""
    reversed_model = copy.deepcopy(imported)
    for decoder in (d for cascade in reversed_model.cascades for d in cascade.norm_unet.unet.decoders):
        decoder.momentum_conv.weight.data = torch.cat(decoder.momentum_conv.weight.data.chunk(3, dim=1)[::-1], dim=1)
    expected = golden["cases"]["square_symmetric_acs"]
    output, _ = _run_recording(reversed_model, expected, torch.float64)
    assert relative_error(output, expected["output"]) > 1e-3


# ------------------------------------------------------------------------------------------ importer
def test_import_drops_the_wrappers_and_the_copies_and_shares_one_prelu(golden, imported):
    state = imported.state_dict()
    assert not any("_dummy_tensor" in key or "sens_net_ckp" in key or ".module.module." in key for key in state)
    assert len(state) == 680  # 696 distinct tensors of the entry less its 16 wrapper dummies
    slopes = [key for key in state if key.endswith(".act.weight") or key == "shared_prelu.weight"]
    assert len(slopes) == 1 + 1 + 4  # the shared PReLU, the first CAB of the sensitivity U-Net and of each cascade
    nontrivial = golden["nontrivial"]
    assert imported.shared_prelu.weight.item() == pytest.approx(nontrivial["shared_prelu"])
    firsts = [imported.sens_net.norm_unet.unet] + [cascade.norm_unet.unet for cascade in imported.cascades]
    slopes = [unet.encoders[0].cabs[0].act.weight.item() for unet in firsts]
    assert slopes == pytest.approx(list(nontrivial["first_cab_prelu"].values()))
    assert [c.dc_weight.item() for c in imported.cascades] == pytest.approx(nontrivial["dc_weight"])


def test_the_entrys_training_checkpoint_imports(golden, tmp_path):
    """The entry's save_model layout: model, optimizer, scheduler, epoch, best_val_loss, exp_dir, args (Namespace)."""
    exp_dir = Path("../result/x/checkpoints")
    args = argparse.Namespace(num_cascades=4, n_history=2, exp_dir=exp_dir, feature_dim=[6, 8, 10])
    source = tmp_path / "best_model.pt"
    torch.save({"epoch": 3, "args": args, "model": golden["state_dict"], "optimizer": {"state": {}, "param_groups": []},
                "scheduler": {"step_size": 11, "gamma": 0.3, "last_epoch": 3}, "best_val_loss": torch.tensor(0.05),
                "exp_dir": exp_dir}, source)
    written = import_checkpoint(source, tmp_path / "out.pt", overrides=["checkpointing=true"])
    assert written["origin"]["layout"] == "promptmr" and written["origin"]["source_epoch"] == 3
    assert written["origin"]["source_args"]["n_history"] == 2
    assert written["model_config"]["checkpointing"] is True and written["model_config"]["n_history"] == 2


@pytest.mark.parametrize("damage", ["copy", "dummy", "prelu", "unknown"])
def test_import_refuses_inconsistent_entry_weights(golden, tmp_path, damage):
    weights = dict(golden["state_dict"])
    if damage == "copy":
        key = next(key for key in weights if key.startswith("sens_net_ckp.module.module."))
        weights[key] = weights[key] + 1
    elif damage == "dummy":
        weights["cascades.0.model.unet.dec_level1.up._dummy_tensor"] = torch.zeros(1)
    elif damage == "prelu":
        weights["cascades.1.model.unet.bottleneck.0.body.1.weight"] = torch.tensor([0.5])
    else:
        weights["cascades.0.model.unet.extra.weight"] = torch.zeros(1)
    torch.save(weights, tmp_path / "source.pt")
    with pytest.raises(UserInputError, match="cannot be imported") as caught:
        import_checkpoint(tmp_path / "source.pt", tmp_path / "out.pt")
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------------ sizes
SIZES = {  # config: (golden param_counts entry, parameters, trainable, fixed prompts, the entry's wrapper dummies)
    "promptmr_plus_8gb": ("entry (8 GB): reduction 2, num_adj_slices 1", 6_014_179, 5_926_051, 88_128, 28),
    "promptmr_plus": ("paper sizes: reduction 16, num_adj_slices 1", 86_418_743, 80_197_943, 6_220_800, 40),
}


@pytest.mark.parametrize("config", sorted(SIZES))
def test_parameter_counts(config):
    _, total, trainable, fixed, _ = SIZES[config]
    parameters = list(build_model(load_model_config(config)).parameters())  # each shared tensor once
    assert sum(p.numel() for p in parameters) == total
    assert sum(p.numel() for p in parameters if p.requires_grad) == trainable
    assert sum(p.numel() for p in parameters if not p.requires_grad) == fixed


@pytest.mark.parametrize("config", sorted(SIZES))
def test_shipped_configs_are_the_entrys_and_count_its_parameters_less_the_wrapper_dummies(golden, config):
    golden_name, total, trainable, _, dummies = SIZES[config]
    counts = golden["param_counts"][golden_name]
    assert counts["parameters"] - dummies == total and counts["requires_grad"] - dummies == trainable
    reference = dict(counts["config"])  # the entry's arguments; the ones we do not have are checked by value
    assert [reference.pop(key) for key in ("num_adj_slices", "use_sens_adj", "no_use_ca")] == [1, True, False]
    shipped = OmegaConf.to_container(load_model_config(config))
    assert {key: shipped[key] for key in reference} == reference
    assert shipped["ca_reduction"] == counts["reduction"] and shipped["use_ca"] is True


# ------------------------------------------------------------------------------------------ builder
@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("num_adj_slices", 5, "num_adj_slices"),
        ("chans", 8, "chans"),
        ("feature_dim", [24, 32], "[24, 32]"),
        ("prompt_size", [16, 8, 0], "[16, 8, 0]"),
        ("n_enc_cab", [0, 3, 3], "[0, 3, 3]"),
        ("n_skip_cab", [1, -1, 1], "[1, -1, 1]"),
        ("len_prompt", "3,3,3", "'3,3,3'"),
        ("num_cascades", -1, "-1"),
        ("n_feat0", 0, "0"),
        ("n_history", 1.5, "1.5"),
        ("ca_reduction", 0, "0"),
        ("ca_reduction", 9, "9"),
        ("n_buffer", 2, "2"),
        ("checkpointing", "yes", "'yes'"),
        ("use_ca", 1, "1"),
        ("sens_coil_chunk", -1, "-1"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_value(key, value, shown):
    cfg = {**OmegaConf.to_container(load_model_config("promptmr_plus_8gb")), key: value}
    with pytest.raises(UserInputError) as caught:
        build_model(cfg)
    message = str(caught.value)
    assert shown in message and "\n" not in message and message.endswith(".")


def test_adaptive_input_off_needs_no_buffer():
    cfg = {**TINY, "_target_": "utils.model.PromptMRPlus", "adaptive_input": False}
    with pytest.raises(UserInputError, match="n_buffer must be 0 when adaptive_input is false"):
        build_model(cfg)
    model = build_model({**cfg, "n_buffer": 0})
    assert model.cascades[0].norm_unet.unet.input_conv.in_channels == 2


def test_feature_varnet_configs_build_as_before():
    assert type(build_model(load_model_config("baby_varnet"))).__name__ == "FeatureVarNet"
    with pytest.raises(UserInputError, match="utils.model.PromptMRPlus"):
        build_model({"_target_": "utils.model.Nope"})
