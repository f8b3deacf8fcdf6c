"""Print the parameter count of a model config, split by stage.

    python -m utils.model.count_params model=dlka_varnet
    python -m utils.model.count_params model=varnet image_chans=12
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from utils.errors import UserInputError, run_cli
from utils.model.builder import build_model, load_model_config
from utils.model.feature_varnet import FeatureVarNet

__all__ = ["count_parameters", "parameter_breakdown", "main"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters, shared modules counted once."""
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameters per part: for a FeatureVarNet the sensitivity model, encoder/decoder and the three stages; for
    another network its sensitivity model and cascades; and the total (trainable, shared tensors once)."""
    if not isinstance(model, FeatureVarNet):
        parts = {name: count_parameters(child) for name, child in model.named_children() if count_parameters(child)}
        parts["total"] = count_parameters(model)
        return parts
    lska_blocks = model.cascade_counts[0]
    parts = {
        "sensitivity model": count_parameters(model.sens_net),
        "feature encoder + decoder": sum(
            count_parameters(getattr(model, name)) for name in ("encoder", "decoder") if hasattr(model, name)
        ),
        "stage 1 (LSKA-UNet feature blocks)": sum(count_parameters(b) for b in model.feature_blocks[:lska_blocks]),
        "stage 2 (UNet feature blocks)": sum(count_parameters(b) for b in model.feature_blocks[lska_blocks:]),
        "stage 3 (E2E-VarNet image blocks)": sum(count_parameters(b) for b in model.image_blocks),
    }
    parts["total"] = count_parameters(model)
    return parts


def main(argv: Sequence[str]) -> int:
    name = "dlka_varnet"
    overrides = []
    for arg in argv:
        if arg == "--debug":
            continue
        if arg.startswith("model="):
            name = arg.removeprefix("model=")
        elif "=" in arg:
            overrides.append(arg)
        else:
            raise UserInputError(f"expected model=<name> or key=value arguments, got {arg!r}.")
    model = build_model(load_model_config(name, overrides))
    stages = f"cascade_counts {list(model.cascade_counts)}" if isinstance(model, FeatureVarNet) else type(model).__name__
    print(f"model {name}, {stages}")
    for part, count in parameter_breakdown(model).items():
        print(f"  {part:<36} {count:>12,d}  ({count / 1e6:.2f} M)")
    return 0


if __name__ == "__main__":
    run_cli(main)
