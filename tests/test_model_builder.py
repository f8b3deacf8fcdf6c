"""Model configs, the one builder, its error messages, and the parameter-count tool."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from utils.errors import UserInputError
from utils.model import FeatureVarNet, build_model, load_model_config
from utils.model.builder import model_config_names
from utils.model.count_params import count_parameters
from utils.model.count_params import main as count_params_main
from utils.model.promptmr import PromptMRPlus


def test_every_shipped_config_names_a_target_and_builds():
    assert {"dlka_varnet", "varnet", "baby_varnet"} <= set(model_config_names())
    for name in model_config_names():
        cfg = load_model_config(name)
        assert "_target_" in cfg
        assert isinstance(build_model(cfg), (FeatureVarNet, PromptMRPlus))


def test_final_config_is_the_entrys_67_6_million_parameter_model():
    cfg = load_model_config("dlka_varnet")
    assert list(cfg.cascade_counts) == [5, 10, 3]
    assert (cfg.feature_chans, cfg.unet_chans, cfg.pools, cfg.sens_chans, cfg.sens_pools) == (12, 24, 4, 8, 4)
    assert cfg.image_chans == 18 and cfg.kspace_mult_factor == 1e6
    count = count_parameters(build_model(cfg))
    assert round(count / 1e6, 1) == 67.6, count  # SPEC §4 "about 67.6 M": 5 % would hide a missing LSKA level


def test_baselines_are_e2e_varnets():
    varnet = build_model(load_model_config("varnet"))
    assert varnet.cascade_counts == (0, 0, 12) and len(varnet.feature_blocks) == 0
    baby = build_model(load_model_config("baby_varnet"))
    assert baby.cascade_counts == (0, 0, 1)
    assert baby.image_blocks[0].norm_unet.unet.down_blocks[0].layers[0].out_channels == 9
    assert baby.sens_net.norm_unet.unet.down_blocks[0].layers[0].out_channels == 4


def test_builder_accepts_plain_dicts_and_dictconfigs_alike():
    plain = {"_target_": "utils.model.FeatureVarNet", "cascade_counts": [1, 0, 2], "pools": 2, "sens_pools": 2,
             "image_pools": 2, "feature_chans": 4, "unet_chans": 4, "sens_chans": 2, "image_chans": 4}
    from_dict = build_model(plain)
    from_cfg = build_model(OmegaConf.create(plain))
    assert from_dict.cascade_counts == from_cfg.cascade_counts == (1, 0, 2)
    assert count_parameters(from_dict) == count_parameters(from_cfg)


def test_overrides_reach_the_model():
    model = build_model(load_model_config("dlka_varnet", ["model.cascade_counts=[0,1,0]", "checkpointing=true"]))
    assert model.cascade_counts == (0, 1, 0) and model.checkpointing is True


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("cascade_counts", [5, 10], "[5, 10]"),
        ("cascade_counts", [5, -1, 3], "[5, -1, 3]"),
        ("cascade_counts", [5, 2.5, 3], "[5, 2.5, 3]"),
        ("cascade_counts", [True, 1, 1], "[True, 1, 1]"),
        ("cascade_counts", "5,10,3", "'5,10,3'"),
        ("unet_chans", 0, "0"),
        ("pools", 2.0, "2.0"),
        ("kspace_mult_factor", -1.0, "-1.0"),
        ("lska_k_size", 9, "9"),
        ("checkpointing", "yes", "'yes'"),
        ("identity_init", 1, "1"),
        ("acs_lines", "centre", "'centre'"),
        ("feature_padding", "replicate", "'replicate'"),
        ("norm_eps", -1e-6, "-1e-06"),
        ("norm_eps", float("nan"), "nan"),
        ("lska_gate", "sigmoid", "'sigmoid'"),
        ("sens_coil_chunk", -1, "-1"),
        ("sens_coil_chunk", 2.0, "2.0"),
        ("unet_channels", 24, "unet_channels"),
        ("_target_", "fastmri.models.VarNet", "fastmri.models.VarNet"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_value(key, value, shown):
    cfg = {**OmegaConf.to_container(load_model_config("baby_varnet")), key: value}
    with pytest.raises(UserInputError) as caught:
        build_model(cfg)
    message = str(caught.value)
    assert shown in message and "\n" not in message and message.endswith(".")


def test_unknown_config_name_is_a_user_error():
    with pytest.raises(UserInputError, match="no_such_model.yaml"):
        load_model_config("no_such_model")


def test_count_params_prints_the_total(capsys):
    assert count_params_main(["model=baby_varnet"]) == 0
    total = count_parameters(build_model(load_model_config("baby_varnet")))
    assert f"{total:,d}" in capsys.readouterr().out.splitlines()[-1]
