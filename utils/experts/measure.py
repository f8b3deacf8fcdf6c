"""How often a router sends a volume where it belongs: confusion tables on a split's files and on masks of
the augmentation family, and the acceleration rule alone over SPEC §1's whole range of masks.

Cases are drawn from a train/val split (fully sampled k-space, so any mask can be applied): every volume
under its own mask, and every volume under ``draws`` masks of each fastMRI type of mask augmentation
(:mod:`utils.data.mask_types`) at acc4 and at acc8, centre fraction uniform in [0.07, 0.10], drawn from a
seeded generator. The truth is the file's anatomy and the mask's acceleration. A decision counts as unsure
when either property was unsure (the router's fallback decided it); it is still counted where it went.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from utils.data.layout import ACCELERATIONS, ANATOMIES, list_volumes, parse_volume_name
from utils.data.mask_types import MASK_TYPES, sample_mask
from utils.data.masks import equispaced_mask
from utils.experts.routing import RouteDecision, Router, VolumeEvidence, acceleration_guess, make_evidence, read_central_slices

__all__ = ["RouterCase", "router_cases", "RouterScore", "score_router", "format_confusion", "acceleration_rule_rates"]

LABELS = tuple(f"{anatomy}_acc{acceleration}" for anatomy in ANATOMIES for acceleration in ACCELERATIONS)
CENTER_FRACTIONS = (0.07, 0.10)
SPEC_WIDTHS = range(320, 481)            # SPEC §1: W from 320 to 480
CHALLENGE_CENTER_LINES = range(26, 40)   # SPEC §1: centre blocks of about 26..39 lines


@dataclass(frozen=True)
class RouterCase:
    kind: str          # "file mask" or the mask type
    truth: str         # e.g. brain_acc4
    evidence: VolumeEvidence


def router_cases(split_dir: Path, augmented_draws: int = 0, seed: int = 430) -> Iterator[RouterCase]:
    """Every volume of ``split_dir/kspace`` under its own mask, then (``augmented_draws`` > 0) under that many
    masks of each type at each acceleration."""
    rng = np.random.default_rng(seed)
    for path in list_volumes(Path(split_dir) / "kspace"):
        name = parse_volume_name(path)
        kspace, mask = read_central_slices(path)
        yield RouterCase("file mask", f"{name.anatomy}_acc{name.acceleration}", make_evidence(path.name, kspace, mask))
        for kind in MASK_TYPES if augmented_draws else ():
            for acceleration in ACCELERATIONS:
                for _ in range(augmented_draws):
                    drawn = sample_mask(kind, kspace.shape[-1], acceleration, rng.uniform(*CENTER_FRACTIONS), rng)
                    yield RouterCase(kind, f"{name.anatomy}_acc{acceleration}", make_evidence(path.name, kspace, drawn))


@dataclass
class RouterScore:
    """Counts of (truth, routed) and of unsure decisions, per case kind and overall."""

    confusion: Counter
    unsure: Counter          # truth -> unsure decisions
    by_kind: dict            # kind -> [cases, route correct, anatomy correct, acceleration correct, unsure, wrong and sure]

    @property
    def cases(self) -> int:
        return sum(self.confusion.values())

    def accuracy(self) -> float:
        return sum(n for (truth, routed), n in self.confusion.items() if truth == routed) / max(self.cases, 1)


def score_router(router: Router, cases: list[RouterCase]) -> RouterScore:
    confusion, unsure, by_kind = Counter(), Counter(), defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for case in cases:
        decision: RouteDecision = router.route(case.evidence)
        confusion[case.truth, decision.label] += 1
        is_unsure = bool(decision.unsure())
        unsure[case.truth] += is_unsure
        anatomy, acceleration = case.truth.split("_acc")
        row = by_kind[case.kind]
        row[0] += 1
        row[1] += decision.label == case.truth
        row[2] += decision.anatomy == anatomy
        row[3] += decision.acceleration == int(acceleration)
        row[4] += is_unsure
        row[5] += decision.label != case.truth and not is_unsure  # a silent mistake
    return RouterScore(confusion, unsure, dict(by_kind))


def format_confusion(score: RouterScore, title: str) -> str:
    """The confusion table (rows: truth, columns: where the router sent the volume, then unsure), and per case
    kind the accuracies, the fraction unsure and the number of wrong decisions not flagged unsure ("silent")."""
    width = max(len(label) for label in LABELS) + 2
    lines = [title, "truth \\ routed".ljust(16) + "".join(label.rjust(width) for label in LABELS) + "unsure".rjust(9)]
    for truth in LABELS:
        row = [score.confusion[truth, routed] for routed in LABELS]
        if sum(row):
            lines.append(truth.ljust(16) + "".join(str(n).rjust(width) for n in row) + str(score.unsure[truth]).rjust(9))
    silent = sum(row[5] for row in score.by_kind.values())
    lines.append(f"route accuracy {score.accuracy():.4f} over {score.cases} cases; wrong without saying unsure: {silent}")
    lines.append("masks".ljust(22) + "cases".rjust(7) + "route".rjust(9) + "anatomy".rjust(9) + "accel.".rjust(9) + "unsure".rjust(9)
                 + "silent".rjust(9))
    for kind, (cases, route, anatomy, acceleration, unsure, silent) in score.by_kind.items():
        lines.append(kind.ljust(22) + str(cases).rjust(7) + "".join(f"{n / cases:9.3f}" for n in (route, anatomy, acceleration, unsure))
                     + str(silent).rjust(9))
    return "\n".join(lines)


def challenge_masks(acceleration: int) -> Iterator[np.ndarray]:
    """Every challenge mask at ``acceleration`` (SPEC §1): each width of :data:`SPEC_WIDTHS`, centre block of
    each size in :data:`CHALLENGE_CENTER_LINES`, equispaced lines from every offset; (W,) float32 each."""
    for width in SPEC_WIDTHS:
        for lines in CHALLENGE_CENTER_LINES:
            for offset in range(acceleration):
                yield equispaced_mask(width, acceleration, lines, offset)


def family_masks(kind: str, acceleration: int, draws_per_width: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """``draws_per_width`` masks of augmentation family ``kind`` at each width of :data:`SPEC_WIDTHS`, centre
    fraction uniform in :data:`CENTER_FRACTIONS`."""
    for width in SPEC_WIDTHS:
        for _ in range(draws_per_width):
            yield sample_mask(kind, width, acceleration, rng.uniform(*CENTER_FRACTIONS), rng)


def rule_rates_row(label: str, masks: Iterator[np.ndarray], acceleration: int) -> tuple[str, int]:
    """One table row: masks, their sampled fractions, and the fraction routed wrong, unsure, and wrong but
    sure ("silent"); with the number of silent masks."""
    count = wrong = unsure = silent = 0
    low, high = 1.0, 0.0
    for mask in masks:
        guess = acceleration_guess(mask)
        fraction = float(np.mean(mask > 0))
        low, high = min(low, fraction), max(high, fraction)
        count += 1
        wrong += guess.value != acceleration
        unsure += not guess.sure
        silent += guess.value != acceleration and guess.sure
    span = f"{low:.3f}..{high:.3f}"
    rates = "".join(f"{n / max(count, 1):9.4f}" for n in (wrong, unsure, silent))
    return label.ljust(26) + str(count).rjust(8) + span.rjust(14) + rates, silent


def acceleration_rule_rates(draws_per_width: int, seed: int = 430) -> str:
    """The acceleration rule alone (no data needed) over SPEC §1's range: every challenge mask (widths
    320..480, centre blocks of 26..39 lines, every offset) and ``draws_per_width`` masks per width of each
    augmentation family, both accelerations; per row the fraction wrong, unsure, and wrong but sure."""
    rng = np.random.default_rng(seed)
    title = (f"acceleration rule: widths {SPEC_WIDTHS[0]}..{SPEC_WIDTHS[-1]}; challenge masks: centre blocks of "
             f"{CHALLENGE_CENTER_LINES[0]}..{CHALLENGE_CENTER_LINES[-1]} lines, every offset; augmentation families: "
             f"{draws_per_width} per width, centre fraction {CENTER_FRACTIONS[0]:.2f}..{CENTER_FRACTIONS[1]:.2f}, seed {seed}")
    header = "masks".ljust(26) + "cases".rjust(8) + "fraction".rjust(14) + "wrong".rjust(9) + "unsure".rjust(9) + "silent".rjust(9)
    lines = [title, header]
    silent = 0
    for acceleration in ACCELERATIONS:
        sources = {"challenge": challenge_masks(acceleration)}
        sources.update({kind: family_masks(kind, acceleration, draws_per_width, rng) for kind in MASK_TYPES})
        for kind, masks in sources.items():
            line, row_silent = rule_rates_row(f"{kind} acc{acceleration}", masks, acceleration)
            lines.append(line)
            silent += row_silent
    lines.append(f"wrong without saying unsure: {silent}")
    return "\n".join(lines)
