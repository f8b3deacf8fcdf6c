"""The reconstruction network and its parts, one concept per module, read top-down:

- ``lska``: Large Separable Kernel Attention and the LSKA encoder block;
- ``unet``: the U-Net (plain, feature-UNet head, or LSKA-UNet);
- ``norm_unet``: fastMRI's NormUnet (per-channel normalisation around a U-Net);
- ``sensitivity``: ACS lines from the mask and the E2E-VarNet SensitivityModel;
- ``feature_space``: the shared feature encoder/decoder and the FeatureImage state;
- ``feature_block``: a feature cascade (soft data consistency + feature UNet + image conv);
- ``varnet_block``: an E2E-VarNet image cascade;
- ``feature_varnet``: the whole network, FeatureVarNet(cascade_counts=[a, b, c], ...);
- ``promptmr``: the other network, PromptMR+ (the 2025 winner's), a package of its own;
- ``builder``: model config -> network (the one builder training and reconstruction share);
- ``checkpoint``: the checkpoint format (tensors and plain data, atomic writes, ``weights_only`` loading);
- ``reference_weights``: fastMRI / GeekSeek / PromptMR+ state dicts -> our configs and key names;
- ``count_params``: ``python -m utils.model.count_params model=<name>``.
Helpers: ``complex_layout`` (complex axis <-> channels) and ``precision`` (what autocast may touch).
"""
from utils.model.builder import build_model, load_model_config
from utils.model.feature_varnet import FeatureVarNet
from utils.model.promptmr import PromptMRPlus

__all__ = ["FeatureVarNet", "PromptMRPlus", "build_model", "load_model_config"]
