"""The models and the winners' recipe pieces at an equal budget, on the demo data, in one go: the table of
``docs/recipes.md``.

    python -m benchmarks.recipes                          # every row, 3 epochs of the whole demo: hours on a 2-core CPU
    python -m benchmarks.recipes --rows demo_varnet dlka_small --epochs 1
    python -m benchmarks.recipes --anatomy knee --epochs 2   # the table of docs/recipes.md (the 2026 anatomy), ~1 h

Every training row runs ``final_main.py --config-name=demo`` with the same seed, epochs and batches (so the same
optimizer steps) on ``--data`` (the demo preset, made if missing), one after another on this machine, then scores
its best checkpoint on the validation split through a manifest (``python -m utils.tools.validate_experts``), which
also serves the inference-side rows: flip test-time augmentation and an ensemble of the last two epochs' weights
use a trained row's checkpoints and no extra training; the average of the last two epochs' weights is written by
``python -m utils.tools.average_checkpoints``. Printed per row: the 2025 validation Total, the 2026 Total
(0.5 SSIM_full + 0.5 SSIM_bbox, no tiebreak), their gain over the zero-filled input and over the first row, and
the wall time of the row's training or scoring. The piece rows (and the average, ensemble and TTA rows) build on
``--base``: by default the model row with the highest 2025 validation Total measured earlier in the same run.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP = ["training.keep_epoch_weights=2"]  # every training row keeps its last two epochs' weights
PROMPTMR_SMALL = ["model=promptmr_plus_8gb", "model.num_cascades=2", "model.n_feat0=4", "model.feature_dim=[6,8,10]",
                  "model.prompt_dim=[3,4,6]", "model.sens_n_feat0=4", "model.sens_feature_dim=[4,6,8]",
                  "model.sens_prompt_dim=[2,3,4]", "model.prompt_size=[8,4,2]", "model.n_history=1", "model.checkpointing=false"]
DLKA_SMALL = ["model=dlka_varnet", "model.cascade_counts=[1,1,1]", "model.feature_chans=6", "model.unet_chans=6", "model.pools=3",
              "model.sens_chans=4", "model.sens_pools=3", "model.image_chans=6", "model.image_pools=3"]
# MRAugment alone at the demo's budget: the recipe's ramp starts after 5 epochs (so never within 3), its mask
# augmentation is another piece, and its acc4 + acc8 duplication would double the optimizer steps
MRAUGMENT_ONLY = ["augment.schedule.kind=constant", "augment.schedule.strength=0.3", "augment.mask=null",
                  "augment.duplicate_accelerations=null"]
# name -> (kind, overrides): "model" rows train a model; "piece" rows train --base plus overrides; "tta",
# "ensemble" and "average" rows score --base's checkpoints differently
ROWS = {
    "demo_varnet": ("model", ["model=demo_varnet"]),
    "dlka_small": ("model", DLKA_SMALL),
    "promptmr_small": ("model", PROMPTMR_SMALL),
    "area_sqrt": ("piece", ["loss.area_weight=sqrt"]),
    "mraugment": ("piece", ["augment=recipe", *MRAUGMENT_ONLY]),
    "mraugment_per_anatomy": ("piece", ["augment=recipe_per_anatomy", *MRAUGMENT_ONLY]),
    "ema": ("piece", ["training.ema_decay=0.95"]),  # horizon ~20 of the demo's 177 steps
    "bbox_weight": ("piece", ["loss.bbox_weight=0.5"]),
    "average_last2": ("average", []),
    "ensemble_last2": ("ensemble", []),
    "tta_flip": ("tta", []),
    "base_best": ("score", []),  # --base's best_model.pt scored as the other inference rows are (no training)
}


def _run(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout


def _train(name: str, overrides: list[str], args: argparse.Namespace) -> float:
    seconds, _ = _run([sys.executable, "final_main.py", "--config-name=demo", f"exp_name={name}", f"result_root={args.out}",
                       f"data.root={args.data}", "data.synthetic_preset=null", f"training.epochs={args.epochs}", "logger.mode=disabled", "training.overwrite=true",
                       *KEEP, *overrides])
    return seconds


def _score(manifest_text: str, name: str, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """Validation numbers of a manifest: (seconds, {total_2025, zero_filled, total_2026})."""
    manifest = args.out / f"{name}.yaml"
    manifest.write_text(manifest_text)
    seconds, out = _run([sys.executable, "-m", "utils.tools.validate_experts", str(manifest), "--data", str(args.data)])
    total = re.search(r"^Total\s+\d+\s+([\d.]+)\s+([\d.]+)", out, re.M)
    total_2026 = re.search(r"2026 Total \(no tiebreak\)\s+([\d.]+)", out)
    return seconds, {"total_2025": float(total[1]), "zero_filled": float(total[2]), "total_2026": float(total_2026[1]) if total_2026 else float("nan")}


def _checkpoints(run: str, args: argparse.Namespace) -> tuple[Path, list[Path]]:
    folder = args.out / run / "checkpoints"
    epochs = sorted(folder.glob("epoch*.pt"), key=lambda path: int(re.sub(r"\D", "", path.stem)))
    return folder / "best_model.pt", epochs[-2:]


def _one_anatomy(data: Path, anatomy: str, view: Path) -> Path:
    """A data root of links to ``anatomy``'s train and val files of ``data`` (the 2026 edition is knee only)."""
    for split in ("train", "val"):
        for kind in ("kspace", "image"):
            folder = view / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for source in sorted((data / split / kind).glob(f"{anatomy}_*.h5")):
                link = folder / source.name
                if not link.exists():
                    link.symlink_to(source.resolve())
    return view


def _row(name: str, args: argparse.Namespace, rows: list[dict]) -> dict:
    kind, overrides = ROWS[name]
    if kind != "model" and args.base == "best":
        measured = [row for row in rows if row["kind"] == "model"]
        if not measured:
            raise SystemExit(f"row {name} needs a model row before it (or --base NAME)")
        args.base = max(measured, key=lambda row: row["total_2025"])["row"]
        print(f"base for the recipe pieces: {args.base}", flush=True)
    seconds = 0.0
    if kind in ("model", "piece"):
        base = [] if kind == "model" else ROWS[args.base][1]
        seconds = _train(name, [*base, *overrides], args)
        best, _ = _checkpoints(name, args)
        manifest = f"router: rule\nexperts: {{all: {best}}}\n"
    elif kind == "average":
        if len(_checkpoints(args.base, args)[1]) < 2:
            raise SystemExit(f"row {name} needs two epochs' weights of {args.base} (--epochs 2 or more)")
        averaged = args.out / "average_last2.pt"
        averaged.unlink(missing_ok=True)
        seconds, _ = _run([sys.executable, "-m", "utils.tools.average_checkpoints", str(args.out / args.base), "--last", "2", "--out", str(averaged)])
        manifest = f"router: rule\nexperts: {{all: {averaged}}}\n"
    elif kind == "ensemble":
        _, last = _checkpoints(args.base, args)
        if len(last) < 2:
            raise SystemExit(f"row {name} needs two epochs' weights of {args.base} (--epochs 2 or more)")
        manifest = f"router: rule\nexperts: {{all: [{', '.join(map(str, last))}]}}\n"
    else:
        best, _ = _checkpoints(args.base, args)
        manifest = f"router: rule\n{'tta: flip' if kind == 'tta' else ''}\nexperts: {{all: {best}}}\n"
    score_seconds, numbers = _score(manifest, name, args)
    return {"row": name, "kind": kind, "base": None if kind == "model" else args.base, "seconds": seconds + score_seconds, **numbers}


def _print(rows: list[dict]) -> None:
    first = rows[0]
    print(f"{'row':<24}{'Total 2025':>11}{'gain':>9}{'vs first':>10}{'Total 2026':>12}{'vs first':>10}{'wall s':>9}")
    print(f"{'zero-filled input':<24}{first['zero_filled']:>11.4f}")
    for row in rows:
        print(f"{row['row']:<24}{row['total_2025']:>11.4f}{row['total_2025'] - row['zero_filled']:>+9.4f}"
              f"{row['total_2025'] - first['total_2025']:>+10.4f}{row['total_2026']:>12.4f}{row['total_2026'] - first['total_2026']:>+10.4f}"
              f"{row['seconds']:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "Data_demo", help="demo-preset data (made if missing)")
    parser.add_argument("--out", type=Path, default=REPO.parent / "result" / "recipes", help="where the rows' runs go")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), help="rows, in order")
    parser.add_argument("--base", choices=["best", *[name for name, (kind, _) in ROWS.items() if kind == "model"]], default="best",
                        help="the model row the piece rows build on (default: the best model row of this run)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every training row (the demo's 3)")
    parser.add_argument("--anatomy", choices=["brain", "knee"], help="train and validate on this anatomy's volumes only")
    args = parser.parse_args()
    args.out, args.data = args.out.resolve(), args.data.resolve()  # the manifests name checkpoints from their own folder
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.data.is_dir():
        _run([sys.executable, "-m", "utils.data.synthetic", "--out", str(args.data), "--preset", "demo"])
    if args.anatomy:
        args.data = _one_anatomy(args.data, args.anatomy, args.out / f"data_{args.anatomy}")
    rows = []
    for name in args.rows:
        rows.append(_row(name, args, rows))
        print(json.dumps(rows[-1]), flush=True)
    _print(rows)


if __name__ == "__main__":
    main()
