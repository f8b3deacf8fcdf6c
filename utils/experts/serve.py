"""Reconstruction with experts: load a manifest's router and checkpoints, route each volume once, reconstruct
it with its expert, and report who served what and what it cost.

Every checkpoint goes through the one loader, :func:`~utils.inference.load.load_reconstructor` (a
checkpoint named by several routes, or several times in one ensemble, is loaded once), with the manifest's
test-time augmentation, and keeps the input transform it was trained with. A route that names a list is an
:class:`~utils.inference.ensemble.Ensemble` of its checkpoints. A checkpoint trained on a ``data.subset``
(:mod:`utils.data.subset`) must cover the routes it is named for: a knee expert under ``brain_acc4`` is
refused before anything is reconstructed. A volume is routed from its
mask and central slices (:mod:`utils.experts.routing`), then all its slices go to one expert.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.data.dataset import SliceDataset
from utils.data.layout import list_volumes, parse_volume_name
from utils.data.subset import DataSubset
from utils.errors import UserInputError, file_error
from utils.experts.manifest import ROUTE_CELLS, ExpertManifest, cell_label, load_manifest
from utils.experts.routing import RouteDecision, Router, read_evidence
from utils.inference.ensemble import Ensemble
from utils.inference.load import Reconstructor, load_reconstructor
from utils.inference.reconstruct import LEADERBOARD_SLICES, TIME_BUDGET_S, ModelClock, reconstruct_dataset

__all__ = ["LEADERBOARD_VOLUMES", "ExpertSet", "RoutedVolume", "load_expert_set", "route_volumes", "reconstruct_folder_with_experts",
           "ExpertsServed", "routing_report"]

LEADERBOARD_VOLUMES = 4 * 29  # brain and knee test1..29 at acc4 and acc8 (SPEC §1)


@dataclass
class ExpertSet:
    """A manifest's router and its loaded experts (route -> :class:`Reconstructor` or :class:`Ensemble`)."""

    manifest: ExpertManifest
    router: Router
    experts: dict[str, Reconstructor | Ensemble]
    load_seconds: float = 0.0
    tta: str = "none"

    @property
    def checkpoints_loaded(self) -> int:
        """Distinct checkpoints in memory (each loaded once, however often the manifest names it)."""
        members = [m for expert in self.experts.values() for m in (expert.members if isinstance(expert, Ensemble) else [expert])]
        return len({id(member) for member in members})

    def describe(self, route: str) -> str:
        """Which checkpoint(s) serve ``route``, for the report."""
        expert = self.experts[route]
        return expert.describe() if isinstance(expert, Ensemble) else str(expert.checkpoint_path)

    @property
    def needs_routing(self) -> bool:
        return self.manifest.splits_anatomy or self.manifest.splits_acceleration

    def unsure(self, decision: RouteDecision) -> list[str]:
        """The decision's unsure reasons that matter to this set (an anatomy-only set ignores the acceleration)."""
        return decision.unsure(self.manifest.splits_anatomy, self.manifest.splits_acceleration)


def _check_subset(manifest: ExpertManifest, route: str, expert: Reconstructor) -> None:
    """An expert trained on a data.subset must cover every anatomy x acceleration of its route."""
    node = (expert.config.get("data") or {}).get("subset")
    try:
        subset = DataSubset.from_config(node)
    except UserInputError as err:
        raise file_error(expert.checkpoint_path, f"stores an unreadable data.subset ({err})") from None
    outside = [cell_label(cell) for cell in ROUTE_CELLS[route] if not subset.covers(*cell)]
    if outside:
        raise file_error(manifest.path, f"experts.{route} names {expert.checkpoint_path}, trained on {subset.label} only "
                                        f"(data.subset), but the route sends it {', '.join(outside)} volumes")


def load_expert_set(manifest: ExpertManifest | str | Path, device: torch.device, tta: str | None = None) -> ExpertSet:
    """Load the router (and classifier) and every checkpoint of a manifest onto ``device``, with test-time
    augmentation ``tta`` (None: the manifest's ``tta``)."""
    start = time.perf_counter()
    manifest = manifest if isinstance(manifest, ExpertManifest) else load_manifest(manifest)
    tta = manifest.tta if tta is None else tta
    classifier = None
    if manifest.classifier is not None:
        from utils.experts.classifier import load_classifier

        classifier, _ = load_classifier(manifest.classifier, device)
    loaded: dict[Path, Reconstructor] = {}
    experts = {}
    for route, target in manifest.experts.items():
        members = []
        for path in manifest.checkpoints(route):
            key = path.resolve()
            if key not in loaded:
                loaded[key] = load_reconstructor(path, device, tta)
            members.append(loaded[key])
            _check_subset(manifest, route, loaded[key])
        experts[route] = Ensemble(members) if isinstance(target, tuple) else members[0]
    return ExpertSet(manifest, Router(manifest.router, classifier, device), experts, time.perf_counter() - start, tta)


@dataclass(frozen=True)
class RoutedVolume:
    path: Path
    route: str
    decision: RouteDecision | None  # None: a set with one route routes nothing


def route_volumes(experts: ExpertSet, kspace_dir: Path) -> tuple[list[RoutedVolume], float]:
    """Route every volume of ``kspace_dir`` once; (volumes, seconds spent routing)."""
    start = time.perf_counter()
    routed = []
    for path in list_volumes(kspace_dir):
        if not experts.needs_routing:
            routed.append(RoutedVolume(path, next(iter(experts.experts)), None))
            continue
        decision = experts.router.route(read_evidence(path))
        routed.append(RoutedVolume(path, experts.manifest.route_for(decision.anatomy, decision.acceleration), decision))
    return routed, time.perf_counter() - start


@dataclass
class ExpertsServed:
    """Volumes and slices per route, the unsure decisions, and where the router disagreed with the file names."""

    volumes: Counter = field(default_factory=Counter)
    slices: Counter = field(default_factory=Counter)
    unsure: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    routed: int = 0
    routing_seconds: float = 0.0

    def add(self, experts: ExpertSet, volume: RoutedVolume, num_slices: int) -> None:
        self.volumes[volume.route] += 1
        self.slices[volume.route] += num_slices
        if volume.decision is None:
            return
        self.routed += 1
        where = f"{volume.path.parent.parent.name}/{volume.path.name}"
        reasons = experts.unsure(volume.decision)
        if reasons:
            self.unsure.append(f"{where} -> {volume.route}, UNSURE: {'; '.join(reasons)}")
        name = parse_volume_name(volume.path)
        if experts.manifest.route_for(name.anatomy, name.acceleration) != volume.route:
            self.disagreements.append(f"{where}: routed to {volume.route} ({volume.decision.details})")


def reconstruct_folder_with_experts(
    experts: ExpertSet, folder: Path, out_dir: Path, device: torch.device, batch_size: int, num_workers: int,
    progress: bool, description: str, clock: ModelClock, served: ExpertsServed, rank: int = 0, world_size: int = 1,
) -> tuple[int, float]:
    """Route the volumes of ``folder/kspace``, reconstruct each group with its expert into ``out_dir``;
    (slices this rank reconstructed, seconds including routing). Every rank routes every volume (the same
    decisions), then reconstructs its share of each expert's volumes."""
    start = time.perf_counter()
    routed, routing_seconds = route_volumes(experts, folder / "kspace")
    served.routing_seconds += routing_seconds
    groups: dict[str, list[RoutedVolume]] = defaultdict(list)
    for volume in routed:
        groups[volume.route].append(volume)
    slices = 0
    for route, volumes in groups.items():
        names = {parse_volume_name(volume.path) for volume in volumes}
        dataset = SliceDataset(folder, experts.experts[route].transform, kspace_only=True, keep_volume=names.__contains__)
        num_slices = {info.kspace_path: info.kspace.num_slices for info in dataset.volumes}
        for volume in volumes:
            served.add(experts, volume, num_slices[volume.path])
        timing = reconstruct_dataset(experts.experts[route], dataset, out_dir, device, batch_size, num_workers, progress,
                                     f"{description} {route}", clock, rank, world_size)
        slices += timing.slices
    return slices, time.perf_counter() - start


def routing_report(experts: ExpertSet, served: ExpertsServed, load_seconds: float, clock: ModelClock, ranks: int = 1) -> str:
    """Who served what, the unsure and disagreeing decisions, and the budget with routing and loading projected."""
    manifest = experts.manifest
    tta = ", test-time augmentation flip (2 passes per checkpoint and slice)" if experts.tta == "flip" else ""
    lines = [f"experts served ({manifest.path}, router {manifest.router}{tta}):"]
    for route in manifest.experts:
        lines.append(f"  {route}: {served.volumes[route]} volumes, {served.slices[route]} slices ({experts.describe(route)})")
    if served.routed:
        per_volume = served.routing_seconds / served.routed
        lines.append(f"routing: {served.routing_seconds:.1f} s for {served.routed} volumes ({1000 * per_volume:.0f} ms/volume); "
                     f"{len(served.unsure)} unsure; {served.routed - len(served.disagreements)} of {served.routed} agree with the "
                     "file names (anatomy from the name, acceleration from the acc folder)")
        lines += [f"  {line}" for line in served.unsure]
        lines += [f"  disagrees with its name: {line}" for line in served.disagreements]
    else:
        per_volume = 0.0
        lines.append("routing: none (one route serves everything)")
    if clock.slices:
        model = clock.seconds / clock.slices * LEADERBOARD_SLICES / ranks
        routing = per_volume * LEADERBOARD_VOLUMES
        total = load_seconds + routing + model
        lines.append(f"budget with experts: load {load_seconds:.1f} s ({experts.checkpoints_loaded} checkpoints) + routing "
                     f"{routing:.0f} s (projected to {LEADERBOARD_VOLUMES} volumes) + model {model:.0f} s (projected to "
                     f"{LEADERBOARD_SLICES:,} slices) = {total:.0f} s; within the {TIME_BUDGET_S:.0f} s budget: "
                     f"{'yes' if total <= TIME_BUDGET_S else 'NO'}")
    return "\n".join(lines)

