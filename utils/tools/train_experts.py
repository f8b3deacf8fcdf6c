"""Train every expert of an expert set, one after another, and write the set's manifest.

    python -m utils.tools.train_experts configs/experts/four.yaml                       # the set's recipe
    python -m utils.tools.train_experts configs/experts/two.yaml --config-name=demo training.epochs=2
    python -m utils.tools.train_experts configs/experts/four.yaml training.init_from=../result/shared/checkpoints/best_model.pt
    python -m utils.tools.train_experts configs/experts/four.yaml --dry-run             # print the commands only

An expert set (``configs/experts/*.yaml``) names a recipe and its experts by route (``brain_acc4``, ``brain``,
``acc8``, ...; :mod:`utils.experts.manifest`). Each expert is one ``final_main.py`` run with
``data.subset`` set from its route (:mod:`utils.data.subset`), in ``<result_root>/<name>/<route>/`` (its own
run folder, checkpoints and best_model.pt, as a sweep job's), with the set's overrides, then its own, then
those of the command line. ``training.init_from=`` on the command line fine-tunes every expert from one shared
model. A failing expert is reported in one line (its own error is printed above it) and the others still
train; the exit status is then 2 (1 if one crashed). When every expert has its best_model.pt,
``<result_root>/<name>/experts.yaml`` is written: the manifest for ``reconstruct_from_ckpt.py -c``.
A rerun refuses expert folders that hold a run, as final_main.py does; add ``training.resume=true`` to finish
an interrupted set (experts that completed train no further) or ``--only`` to retrain some.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from utils.atomic import atomic_path
from utils.errors import ArgumentParser, UserInputError, file_error, run_cli
from utils.experts.manifest import (
    EXPERT_MANIFEST_NAME,
    ROUTE_CELLS,
    check_routes,
    manifest_text,
)
from utils.gates.torch_floor import require_safe_torch
from utils.gates.yaml_file import read_yaml_mapping

__all__ = ["ExpertSetSpec", "load_expert_set_spec", "expert_command", "main"]

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
RESERVED = ("exp_name", "data.subset.anatomy", "data.subset.acceleration")  # set by the tool for every expert


@dataclass(frozen=True)
class ExpertSetSpec:
    path: Path
    name: str
    config_name: str
    overrides: list[str]
    router: str
    classifier: str | None
    experts: dict[str, list[str]]  # route -> its own overrides


def _strings(path: Path, key: str, value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise file_error(path, f"{key} must be a list of Hydra overrides (key=value strings), got {value!r}")
    return list(value)


def load_expert_set_spec(path: str | Path) -> ExpertSetSpec:
    """Read ``configs/experts/<set>.yaml``; a mistake is one UserInputError naming the file and the key."""
    path = Path(path)
    node = read_yaml_mapping(path, "expert set")
    unknown = sorted(set(map(str, node)) - {"name", "config_name", "overrides", "router", "classifier", "experts"})
    if unknown:
        raise file_error(path, f"unknown key '{unknown[0]}'")
    name = node.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or name in (".", ".."):
        raise file_error(path, f"name must be a folder name, got {name!r}")
    router, experts = node.get("router", "rule"), node.get("experts")
    check_routes(path, router, experts, "override lists")  # before hours of training, not when writing experts.yaml
    classifier = node.get("classifier")
    return ExpertSetSpec(
        path=path,
        name=name,
        config_name=str(node.get("config_name", "train")),
        overrides=_strings(path, "overrides", node.get("overrides")),
        router=router,
        classifier=None if classifier is None else str(classifier),
        experts={str(route): _strings(path, f"experts.{route}", value) for route, value in experts.items()},
    )


def subset_overrides(route: str) -> list[str]:
    """``data.subset`` of a route: ``brain_acc4`` -> anatomy brain, acceleration 4; ``brain`` -> anatomy only."""
    cells = ROUTE_CELLS[route]
    anatomies, accelerations = {cell[0] for cell in cells}, {cell[1] for cell in cells}
    anatomy = anatomies.pop() if len(anatomies) == 1 else "null"
    acceleration = accelerations.pop() if len(accelerations) == 1 else "null"
    return [f"data.subset.anatomy={anatomy}", f"data.subset.acceleration={acceleration}"]


def expert_command(spec: ExpertSetSpec, route: str, config_name: str, set_root: Path, overrides: Sequence[str]) -> list[str]:
    """The ``final_main.py`` command line that trains one expert (``result_root=`` overrides are folded into
    ``set_root``)."""
    own = [override for override in (*spec.overrides, *spec.experts[route], *overrides) if not override.startswith("result_root=")]
    return [sys.executable, str(REPO / "final_main.py"), f"--config-name={config_name}", *own, *subset_overrides(route),
            f"result_root={set_root}", f"exp_name={route}"]


def _result_root(config_name: str, overrides: Sequence[str]) -> Path:
    """``result_root`` of the composed recipe; a bad config name or override is reported before any training."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not (CONFIG_DIR / f"{config_name}.yaml").is_file():
        choices = ", ".join(sorted(path.stem for path in CONFIG_DIR.glob("*.yaml")))
        raise UserInputError(f"--config-name={config_name}: there is no {CONFIG_DIR / config_name}.yaml; choose one of {choices}")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        return Path(OmegaConf.select(cfg, "result_root"))
    except (HydraException, OmegaConfBaseException) as err:
        raise UserInputError(f"the overrides do not compose with configs/{config_name}.yaml: {str(err).splitlines()[0]}") from None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(description="Train every expert of an expert set and write its manifest.")
    parser.add_argument("expert_set", help="configs/experts/<set>.yaml")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every expert (key=value)")
    parser.add_argument("--config-name", dest="config_name", default=None, help="recipe instead of the set's config_name")
    parser.add_argument("--name", default=None, help="set folder instead of the set's name")
    parser.add_argument("--only", default=None, help="comma-separated routes to train (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_intermixed_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    spec = load_expert_set_spec(args.expert_set)
    for override in args.overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if "=" not in override or key in RESERVED:
            raise UserInputError(f"override {override!r}: expected key=value, and {', '.join(RESERVED)} are set per expert by the set")
    config_name = (args.config_name or spec.config_name).removesuffix(".yaml")
    name = args.name or spec.name
    set_root = _result_root(config_name, [*spec.overrides, *args.overrides]) / name
    routes = list(spec.experts) if args.only is None else [route.strip() for route in args.only.split(",")]
    missing = [route for route in routes if route not in spec.experts]
    if missing:
        raise UserInputError(f"--only {args.only}: {', '.join(missing)} is not an expert of {spec.path} ({', '.join(spec.experts)})")
    failures = []
    for index, route in enumerate(routes, 1):
        command = expert_command(spec, route, config_name, set_root, args.overrides)
        print(f"[{index}/{len(routes)}] expert {route}: {' '.join(command[1:])}", flush=True)
        if args.dry_run:
            continue
        started = time.perf_counter()
        status = subprocess.run(command).returncode
        print(f"[{index}/{len(routes)}] expert {route}: {'done' if status == 0 else f'FAILED (exit status {status})'} "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        if status != 0:
            failures.append((route, status))
    checkpoints = {route: set_root / route / "checkpoints" / "best_model.pt" for route in spec.experts}
    manifest = set_root / EXPERT_MANIFEST_NAME
    if args.dry_run:
        print(f"would write {manifest}")
        return 0
    if failures:
        print(f"error: {len(failures)} of {len(routes)} experts failed: {', '.join(f'{r} (exit status {s})' for r, s in failures)}; "
              f"no manifest written (logs: {set_root}/<route>/hydra/)", file=sys.stderr)
        return 2 if all(status == 2 for _, status in failures) else 1
    lacking = [route for route, path in checkpoints.items() if not path.is_file()]
    if lacking:
        raise UserInputError(f"{set_root}: no best_model.pt yet for {', '.join(lacking)}; train them (--only) before the manifest is written")
    classifier = None if spec.classifier is None else Path(spec.classifier)
    if spec.router == "classifier" and classifier is None:
        raise file_error(spec.path, "router: classifier needs classifier: <checkpoint> (python -m utils.tools.train_router)")
    if classifier is not None and not classifier.is_file():
        raise file_error(spec.path, f"classifier names {classifier}, which does not exist")
    with atomic_path(manifest) as temporary:
        temporary.write_text(manifest_text(spec.router, classifier, checkpoints, set_root,
                                           f"written by python -m utils.tools.train_experts {' '.join(argv)}"))
    print(f"wrote {manifest}: reconstruct with  python3 reconstruct_from_ckpt.py -c {manifest} -p <data>/leaderboard")
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
