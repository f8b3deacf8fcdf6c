"""How far each of this repository's model options moves the output away from the references' code.

    python -m benchmarks.reference_options [--golden ../shared/golden]

Loads the golden vectors (weights in the references' key names, inputs, the references' outputs), imports the
weights, and prints the max |ours - reference| / max |reference| of every case: first with the defaults (the
reference behaviour: must be <= 1e-5), then with one option switched to this repository's alternative. The
table in docs/model.md ("Where the model is not the reference") comes from this script.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from utils.errors import run_cli
from utils.model.builder import build_model
from utils.model.reference_weights import convert_state_dict
from utils.mri.crop import center_crop_or_pad

GOLDEN_FILES = ("fastmri_varnet.pt", "geekseek_dlka_varnet.pt")
OPTIONS = {
    "defaults (reference)": {},
    "acs_lines=contiguous": {"acs_lines": "contiguous"},
    "feature_padding=zero_centred": {"feature_padding": "zero_centred"},
    "norm_eps=1e-6, kspace_mult_factor=1e6": {"norm_eps": 1e-6, "kspace_mult_factor": 1e6},
    "norm_eps=1e-6, kspace_mult_factor=1": {"norm_eps": 1e-6, "kspace_mult_factor": 1.0},
    "lska_gate=raw": {"lska_gate": "raw"},
}


def relative_errors(golden: dict, options: dict) -> list[float]:
    config, weights = convert_state_dict(golden["state_dict"])
    model = build_model({**config, **options}).eval()
    model.load_state_dict(weights)
    errors = []
    for case in golden["cases"].values():
        with torch.no_grad():
            output = model(case["masked_kspace"], case["mask"])
        reference = center_crop_or_pad(case["output"], (384, 384))
        errors.append(((output - reference).abs().max() / reference.abs().max()).item())
    return errors


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--golden", default=str(Path(__file__).resolve().parents[2] / "shared" / "golden"))
    args = parser.parse_args(argv)
    for name in GOLDEN_FILES:
        golden = torch.load(Path(args.golden) / name, weights_only=True)
        print(f"{name}: cases {', '.join(golden['cases'])}")
        for label, options in OPTIONS.items():
            errors = relative_errors(golden, options)
            print(f"  {label:38s} " + "  ".join(f"{error:.2e}" for error in errors))
    return 0


if __name__ == "__main__":
    run_cli(main)
