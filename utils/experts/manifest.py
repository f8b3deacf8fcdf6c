"""Expert manifests: which checkpoint reconstructs which anatomy x acceleration, and which router decides.

    # experts.yaml (python -m utils.tools.train_experts writes one); paths are relative to this file
    router: rule                 # rule | classifier (utils/experts/routing.py)
    classifier: null             # anatomy classifier checkpoint (python -m utils.tools.train_router): needed by
                                 # router: classifier; with router: rule, the fallback when the rule is unsure
    tta: none                    # none | flip: test-time augmentation of every checkpoint (utils/inference/tta.py)
    experts:                     # route -> checkpoint; every anatomy x acceleration covered exactly once
      brain_acc4: brain_acc4/checkpoints/best_model.pt
      brain_acc8: [brain_acc8/checkpoints/best_model.pt, brain_acc8_seed2/checkpoints/best_model.pt]   # an ensemble
      knee_acc4: knee_acc4/checkpoints/best_model.pt
      knee_acc8: knee_acc8/checkpoints/best_model.pt

Routes are ``brain_acc4``, ``brain_acc8``, ``knee_acc4``, ``knee_acc8``, ``brain``, ``knee``, ``acc4``, ``acc8``
and ``all`` (one shared model: nothing is routed). A route names one checkpoint, or a list of them: an
ensemble, whose outputs are averaged (:mod:`utils.inference.ensemble`). :func:`load_manifest` refuses, in one
sentence naming the manifest, an unknown key or route, a route left uncovered or covered twice, a missing
checkpoint, an empty list or a list entry that is not a path, an unknown ``tta`` and a classifier router
without its classifier, so nothing is reconstructed from a broken manifest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from utils.data.layout import ACCELERATIONS, ANATOMIES
from utils.errors import file_error
from utils.experts.routing import ROUTERS
from utils.gates.yaml_file import read_yaml_mapping
from utils.inference.tta import TTA_MODES

__all__ = ["EXPERT_MANIFEST_NAME", "MANIFEST_SUFFIXES", "ROUTE_CELLS", "ExpertManifest", "check_routes", "is_manifest", "load_manifest", "manifest_text"]

EXPERT_MANIFEST_NAME = "experts.yaml"  # the manifest of an expert set, in the set's folder (train_experts writes it)
MANIFEST_SUFFIXES = (".yaml", ".yml")
CELLS = tuple((anatomy, acceleration) for anatomy in ANATOMIES for acceleration in ACCELERATIONS)
ROUTE_CELLS: dict[str, tuple[tuple[str, int], ...]] = {
    **{f"{anatomy}_acc{acceleration}": ((anatomy, acceleration),) for anatomy, acceleration in CELLS},
    **{anatomy: tuple(cell for cell in CELLS if cell[0] == anatomy) for anatomy in ANATOMIES},
    **{f"acc{acceleration}": tuple(cell for cell in CELLS if cell[1] == acceleration) for acceleration in ACCELERATIONS},
    "all": CELLS,
}
_KEYS = ("router", "classifier", "tta", "experts")


def cell_label(cell: tuple[str, int]) -> str:
    return f"{cell[0]}_acc{cell[1]}"


def is_manifest(path: str | Path) -> bool:
    """A ``-c`` argument naming a YAML file is an expert manifest (a checkpoint otherwise)."""
    return Path(path).suffix.lower() in MANIFEST_SUFFIXES


@dataclass(frozen=True)
class ExpertManifest:
    """A checked manifest; ``experts`` maps each route to its checkpoint (a path) or its ensemble (a tuple of
    paths), as written, resolved against the manifest's folder."""

    path: Path
    router: str
    classifier: Path | None
    experts: dict[str, Path | tuple[Path, ...]]
    tta: str = "none"

    def checkpoints(self, route: str) -> tuple[Path, ...]:
        """The checkpoints of ``route``: one, or the ensemble's as listed."""
        target = self.experts[route]
        return target if isinstance(target, tuple) else (target,)

    def route_for(self, anatomy: str, acceleration: int) -> str:
        """The route that covers ``anatomy`` at ``acceleration`` (exactly one does)."""
        return next(route for route in self.experts if (anatomy, acceleration) in ROUTE_CELLS[route])

    @property
    def splits_anatomy(self) -> bool:
        """Whether brain and knee volumes can go to different checkpoints (then the anatomy is routed)."""
        return any(self.route_for("brain", acc) != self.route_for("knee", acc) for acc in ACCELERATIONS)

    @property
    def splits_acceleration(self) -> bool:
        return any(self.route_for(anatomy, 4) != self.route_for(anatomy, 8) for anatomy in ANATOMIES)


def _resolve(manifest: Path, key: str, value: object) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise file_error(manifest, f"{key} must be a checkpoint path (relative to the manifest), got {value!r}")
    try:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        exists = path.is_file()
    except (OSError, ValueError, RuntimeError) as err:  # a NUL byte, a name too long, an unknown ~user
        raise file_error(manifest, f"{key} is not a usable path ({type(err).__name__}: {err})") from None
    if not exists:
        raise file_error(manifest, f"{key} names {path}, which does not exist")
    return path


def _resolve_target(manifest: Path, route: str, value: object) -> Path | tuple[Path, ...]:
    """A route's checkpoint path, or the tuple of an ensemble's (a non-empty list of paths)."""
    if not isinstance(value, list):
        return _resolve(manifest, f"experts.{route}", value)
    if not value:
        raise file_error(manifest, f"experts.{route} is an empty list; an ensemble names at least one checkpoint")
    return tuple(_resolve(manifest, f"experts.{route}[{index}]", item) for index, item in enumerate(value))


def load_manifest(path: str | Path) -> ExpertManifest:
    """Read and check a manifest (see the module docstring); every problem is a UserInputError naming it."""
    path = Path(path)
    node = read_yaml_mapping(path, "expert manifest")
    unknown = sorted(set(map(str, node)) - set(_KEYS))
    if unknown:
        raise file_error(path, f"unknown key '{unknown[0]}'; a manifest has {', '.join(_KEYS)}")
    router, experts = node.get("router", "rule"), node.get("experts")
    check_routes(path, router, experts, "checkpoints")
    classifier = node.get("classifier")
    if router == "classifier" and classifier is None:
        raise file_error(path, "router: classifier needs classifier: <checkpoint> (python -m utils.tools.train_router)")
    tta = "none" if node.get("tta") is None else node.get("tta")
    if tta not in TTA_MODES:
        raise file_error(path, f"tta: {tta!r} is not a test-time augmentation; choose {' or '.join(TTA_MODES)}")
    return ExpertManifest(
        path=path,
        router=router,
        classifier=None if classifier is None else _resolve(path, "classifier", classifier),
        experts={str(route): _resolve_target(path, str(route), value) for route, value in experts.items()},
        tta=tta,
    )


def check_routes(path: Path, router: object, experts: object, targets: str) -> None:
    """What a manifest and an expert set (``utils/tools/train_experts.py``) both demand of their ``router`` and
    ``experts``: a known router, and routes that cover every anatomy x acceleration exactly once. ``targets``
    names what the routes map to, for the message. Each problem is a UserInputError naming ``path``."""
    if router not in ROUTERS:
        raise file_error(path, f"router: {router!r} is not a router; choose {' or '.join(ROUTERS)}")
    if not isinstance(experts, dict) or not experts:
        raise file_error(path, f"experts must map routes (brain_acc4, ..., brain, knee, acc4, acc8, all) to {targets}")
    covered: dict[tuple[str, int], str] = {}
    for route in map(str, experts):
        if route not in ROUTE_CELLS:
            raise file_error(path, f"experts.{route} is not a route; choose from {', '.join(ROUTE_CELLS)}")
        for cell in ROUTE_CELLS[route]:
            if cell in covered:
                raise file_error(path, f"experts.{covered[cell]} and experts.{route} both cover {cell_label(cell)}; each "
                                       "anatomy x acceleration needs exactly one expert")
            covered[cell] = route
    uncovered = [cell_label(cell) for cell in CELLS if cell not in covered]
    if uncovered:
        raise file_error(path, f"no expert covers {', '.join(uncovered)}; add a route for it (or a wider one: brain, knee, acc4, acc8, all)")


def manifest_text(router: str, classifier: Path | None, experts: dict[str, Path | tuple[Path, ...]], folder: Path, comment: str = "",
                  tta: str = "none") -> str:
    """The YAML of a manifest in ``folder``, with paths written relative to it (an ensemble as a flow list)."""
    def relative(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()

    def target(value: Path | tuple[Path, ...]) -> str:
        return f"[{', '.join(map(relative, value))}]" if isinstance(value, (tuple, list)) else relative(value)

    lines = [f"# {line}" for line in comment.splitlines()] + [
        f"router: {router}",
        f"classifier: {relative(classifier) if classifier else 'null'}",
        *([f"tta: {tta}"] if tta != "none" else []),
        "experts:",
        *[f"  {route}: {target(value)}" for route, value in experts.items()],
    ]
    return "\n".join(lines) + "\n"
