"""Measure the routers on a train/val split: under the files' own masks and under augmentation masks.

    python -m utils.tools.measure_routers --data ../Data_demo                          # rule router, val split
    python -m utils.tools.measure_routers --data ../Data_demo --classifier ../result/router/demo.pt --draws 5
    python -m utils.tools.measure_routers --mask-draws 50                            # the acceleration rule alone

Prints a confusion table (truth: the file's anatomy and the mask's acceleration; columns: where the router
sent the volume, and how many decisions were unsure) and the accuracy per mask type, for ``router: rule``
and, with ``--classifier``, for ``router: classifier`` and for the rule with the classifier as its fallback.
With ``--mask-draws N``, only the acceleration rule, over SPEC §1's whole range and no data: every challenge
mask (widths 320..480, centre blocks of 26..39 lines, every offset) and N masks per width of each augmentation
family, at acc4 and acc8; per family and acceleration the fraction routed wrong, unsure, and wrong but sure.
The leaderboard is never read (it is under-sampled already, and not for model selection).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.experts.measure import acceleration_rule_rates, format_confusion, router_cases, score_router
from utils.experts.routing import Router
from utils.gates.torch_floor import require_safe_torch

__all__ = ["main"]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(description="Confusion tables of the routers.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="../Data", help="data root")
    parser.add_argument("--split", default="val", help="split folder under --data (fully sampled k-space)")
    parser.add_argument("--classifier", default=None, help="anatomy classifier checkpoint (python -m utils.tools.train_router)")
    parser.add_argument("--draws", type=int, default=3, help="augmentation masks per type, acceleration and volume")
    parser.add_argument("--seed", type=int, default=430)
    parser.add_argument("--mask-draws", dest="mask_draws", type=int, default=0,
                        help="only the acceleration rule: every challenge mask and this many masks per width of each "
                             "augmentation family and acceleration (no data read)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    if args.draws < 0 or args.mask_draws < 0:
        raise UserInputError(f"--draws and --mask-draws must be >= 0, got {args.draws} and {args.mask_draws}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.mask_draws:
        print(acceleration_rule_rates(args.mask_draws, args.seed))
        return 0
    split_dir = Path(args.data) / args.split
    cases = list(router_cases(split_dir, args.draws, args.seed))
    files = [case for case in cases if case.kind == "file mask"]
    augmented = [case for case in cases if case.kind != "file mask"]
    routers = {"rule": Router("rule")}
    if args.classifier:
        from utils.experts.classifier import load_classifier

        classifier, record = load_classifier(args.classifier)
        print(f"classifier {args.classifier}: validation accuracy {record.get('val_slice_accuracy', float('nan')):.4f} "
              f"per slice when trained")
        routers["classifier"] = Router("classifier", classifier)
        routers["rule, classifier fallback"] = Router("rule", classifier)
    for name, router in routers.items():
        print()
        print(format_confusion(score_router(router, files), f"router {name}: {split_dir}, files under their own masks ({len(files)} volumes)"))
        if augmented:
            print()
            print(format_confusion(score_router(router, augmented), f"router {name}: {split_dir}, augmentation masks "
                                   f"({args.draws} per type x acc4/acc8 x volume, centre fraction 0.07..0.10, seed {args.seed})"))
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
