"""Which expert reconstructs a volume: its anatomy and acceleration, estimated from the data alone.

A volume is routed once, from its mask and the zero-filled images of its central slices
(:func:`read_evidence`); file names are never read. The acceleration comes from the mask's line spacing
outside its centre block, and from its sampled fraction where the lines have no step of 4 or 8
(:func:`acceleration_guess`); the anatomy from the k-space height checked against the zero-filled intensity
(``router: rule``, :func:`rule_anatomy_guess`) or from the CNN of :mod:`utils.experts.classifier`
(``router: classifier``). A decision that is not sure says why, and is never silent; the fallback for an unsure
anatomy is the other router's answer when that one is sure. The derivation of every threshold below and the
measured confusion tables: ``docs/experts.md``, "Routers".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.data.challenge_writer import rss_crop
from utils.data.h5 import open_h5, read_kspace_info
from utils.data.layout import ACCELERATIONS
from utils.errors import file_error
from utils.mri.acs import acs_bounds

__all__ = [
    "ROUTERS",
    "BRAIN_KNEE_INTENSITY",
    "Guess",
    "LineSpacing",
    "line_spacing",
    "RouteDecision",
    "VolumeEvidence",
    "read_central_slices",
    "make_evidence",
    "read_evidence",
    "zero_filled_images",
    "acceleration_guess",
    "rule_anatomy_guess",
    "Router",
]

ROUTERS = ("rule", "classifier")
ROUTE_SLICES = 3                      # central slices whose zero-filled images are looked at
MIN_STEP_GAPS = 6                     # fewer gaps between outside lines could be equal by chance
SPACING_TOLERANCE = 0.10              # unequal spacing within 10 % of R on average still reads acc R (centre on top)
STEPPED_FRACTION_TOLERANCE = 0.15     # a stepped mask counting its block in W/R lines samples within 15 % of 1/R (rounded steps)
RANDOM_Z = 5.0                        # random draws stray this far about once in 2 million masks
FRACTION_MIDPOINT = 1 / math.sqrt(32)  # 0.177, between 1/8 and 1/4: the guess kept when nothing reads sure
PLAUSIBLE_FRACTIONS = (0.08, 0.40)    # every acc4/acc8 mask family samples within
ANATOMY_HEIGHTS = {768: "brain", 640: "knee"}
BRAIN_KNEE_INTENSITY = math.sqrt(5e-4 * 1e-4)  # between the brain and knee volume maxima of SPEC §1
CLASSIFIER_CONFIDENCE = 0.9


@dataclass(frozen=True)
class VolumeEvidence:
    """What a router sees of one volume.

    zero_filled: (n, 384, 384) float32, RSS of the masked k-space of the n central slices, centre-cropped
    (the ``image_input`` of the challenge files).
    """

    name: str
    height: int
    width: int
    mask: np.ndarray
    zero_filled: np.ndarray


def zero_filled_images(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, C, H, W) complex k-space and (W,) mask -> (S, 384, 384) float32 zero-filled RSS images."""
    return np.stack([rss_crop(np.ascontiguousarray(slice_kspace * mask, dtype=np.complex64)) for slice_kspace in kspace])


def read_central_slices(kspace_path: str | Path, num_slices: int = ROUTE_SLICES) -> tuple[np.ndarray, np.ndarray]:
    """(k-space (n, C, H, W) complex64 of the ``num_slices`` central slices, the file's mask (W,) float32)."""
    kspace_path = Path(kspace_path)
    info = read_kspace_info(kspace_path)
    first = max(0, info.num_slices // 2 - num_slices // 2)
    try:
        with open_h5(kspace_path) as handle:
            kspace = handle["kspace"][first:min(info.num_slices, first + num_slices)]
            mask = handle["mask"][()].astype(np.float32)
    except OSError:
        raise file_error(kspace_path, "cannot be read (truncated or corrupt?)") from None
    return kspace, mask


def make_evidence(name: str, kspace: np.ndarray, mask: np.ndarray) -> VolumeEvidence:
    """The evidence of k-space (n, C, H, W) under ``mask`` (W,): the file's, or e.g. an augmentation mask
    applied to fully sampled k-space."""
    mask = np.asarray(mask, dtype=np.float32)
    return VolumeEvidence(name, kspace.shape[-2], kspace.shape[-1], mask, zero_filled_images(kspace, mask))


def read_evidence(kspace_path: str | Path, num_slices: int = ROUTE_SLICES) -> VolumeEvidence:
    """The evidence of one k-space file under its own mask (leaderboard k-space is masked already)."""
    kspace, mask = read_central_slices(kspace_path, num_slices)
    return make_evidence(Path(kspace_path).name, kspace, mask)


@dataclass(frozen=True)
class Guess:
    """One source's answer about one property, whether it is sure, and what it saw."""

    value: str | int
    sure: bool
    why: str


@dataclass(frozen=True)
class RouteDecision:
    """Where a volume goes. ``anatomy_unsure`` / ``acceleration_unsure`` say why that property was unsure and
    what was used instead (None: sure); ``details`` what the router saw."""

    anatomy: str
    acceleration: int
    anatomy_unsure: str | None
    acceleration_unsure: str | None
    details: str

    @property
    def label(self) -> str:
        return f"{self.anatomy}_acc{self.acceleration}"

    def unsure(self, anatomy: bool = True, acceleration: bool = True) -> list[str]:
        """The reasons, for the properties asked about (an expert set split by anatomy alone ignores the other)."""
        return [f"{kind}: {note}" for kind, note, wanted in (("anatomy", self.anatomy_unsure, anatomy),
                                                               ("acceleration", self.acceleration_unsure, acceleration)) if wanted and note]


@dataclass(frozen=True)
class LineSpacing:
    """The sampled lines of a (W,) mask outside its centre block (the contiguous run through column W // 2).

    ``block``: lines in the block (outside lines that touch it belong to it); ``lines``: sampled lines outside
    it; ``gaps``: (n,) int, the distances in columns between neighbouring outside lines on one side of the block.
    """

    width: int
    block: int
    lines: int
    gaps: np.ndarray

    @property
    def stepped(self) -> bool:
        """Enough gaps, all of one value or of two adjacent ones (a non-integer step rounded to columns)."""
        return len(self.gaps) >= MIN_STEP_GAPS and int(self.gaps.max() - self.gaps.min()) <= 1

    @property
    def step(self) -> int | None:
        """The one gap of equispaced lines; None when the gaps differ or are too few to tell."""
        return int(self.gaps[0]) if self.stepped and self.gaps.min() == self.gaps.max() else None

    @property
    def mean(self) -> float:
        """Mean gap in columns (nan without two outside lines on one side)."""
        return float(self.gaps.mean()) if len(self.gaps) else math.nan

    def describe(self) -> str:
        if self.step is not None:
            lines = f"equispaced lines every {self.step} columns"
        elif self.stepped:
            lines = f"lines every {self.gaps.min()} or {self.gaps.max()} columns (mean {self.mean:.2f})"
        elif len(self.gaps) >= MIN_STEP_GAPS:
            lines = f"irregularly spaced lines (gaps {self.gaps.min()}..{self.gaps.max()}, mean {self.mean:.2f})"
        else:
            lines = f"{self.lines} lines, too few to show a spacing,"
        return f"{lines} outside a centre block of {self.block} lines"


def line_spacing(mask: np.ndarray) -> LineSpacing:
    """The :class:`LineSpacing` of a (W,) mask; ValueError when column W // 2 is not sampled (no centre block)."""
    sampled = np.asarray(mask) > 0
    start, stop = acs_bounds(sampled)
    left, right = np.flatnonzero(sampled[:start]), np.flatnonzero(sampled[stop:])
    gaps = np.concatenate((np.diff(left), np.diff(right))).astype(np.int64)
    return LineSpacing(len(sampled), stop - start, len(left) + len(right), gaps)


def random_draw_z(spacing: LineSpacing, acceleration: int) -> float:
    """How far, in standard deviations, the outside line count is from fastMRI's random draws at ``acceleration``
    (each outside column with probability (W / R - n) / (W - n), W / R lines on average), on the arcsine scale
    where binomial counts are normal with unit variance (the sparse acc8 draws have a long upper tail)."""
    columns = spacing.width - spacing.block
    probability = min(max((spacing.width / acceleration - spacing.block) / columns, 0.0), 1.0)
    return 2 * math.sqrt(columns) * (math.asin(math.sqrt(spacing.lines / columns)) - math.asin(math.sqrt(probability)))


def on_top_reading(spacing: LineSpacing) -> list[int]:
    """The accelerations R whose centre-on-top masks (lines every R columns, the block added: the challenge's)
    the spacing fits: exactly R when equispaced, within SPACING_TOLERANCE of R on average otherwise."""
    if spacing.step is not None:
        return [spacing.step] if spacing.step in ACCELERATIONS else []
    if len(spacing.gaps) < MIN_STEP_GAPS:
        return []
    return [acceleration for acceleration in ACCELERATIONS if abs(spacing.mean / acceleration - 1) <= SPACING_TOLERANCE]


def counted_in_reading(spacing: LineSpacing) -> list[int]:
    """The accelerations R whose centre-counted-in masks (W / R lines in all: the fraction families, random)
    the mask fits: a stepped mask's sampled fraction within the rounding of 1/R, another's outside line
    count within RANDOM_Z standard deviations of random draws at R."""
    if spacing.stepped:
        fraction = (spacing.block + spacing.lines) / spacing.width
        return [acceleration for acceleration in ACCELERATIONS if abs(fraction * acceleration - 1) <= STEPPED_FRACTION_TOLERANCE]
    return [acceleration for acceleration in ACCELERATIONS if abs(random_draw_z(spacing, acceleration)) <= RANDOM_Z]


def acceleration_guess(mask: np.ndarray) -> Guess:
    """acc4 or acc8 of a (W,) 0/1 mask: the step of its lines outside the centre block when that is 4 or 8,
    else the readings of :func:`on_top_reading` and :func:`counted_in_reading`, sure when they name exactly
    one acceleration (``docs/experts.md``, "Routers")."""
    sampled = np.asarray(mask) > 0
    fraction = float(sampled.mean())
    nearest = 4 if fraction >= FRACTION_MIDPOINT else 8
    low, high = PLAUSIBLE_FRACTIONS
    if not low <= fraction <= high:
        return Guess(nearest, False, f"sampled fraction {fraction:.3f} is outside {low}..{high}, where acc4 and acc8 masks lie")
    try:
        spacing = line_spacing(sampled)
    except ValueError:
        return Guess(nearest, False, f"column W // 2 is not sampled: no centre block to read the spacing outside "
                                     f"(sampled fraction {fraction:.3f})")
    seen = f"{spacing.describe()}, sampled fraction {fraction:.3f}"
    if spacing.step in ACCELERATIONS:
        return Guess(spacing.step, True, seen)
    on_top, counted_in = on_top_reading(spacing), counted_in_reading(spacing)
    readings = sorted(set(on_top) | set(counted_in))
    if len(readings) == 1:
        how = [name for name, read in (("the mean spacing (centre on top)", on_top), ("the line count (centre counted in W / R)", counted_in)) if read]
        return Guess(readings[0], True, f"{seen}: {' and '.join(how)} read{'s' if len(how) == 1 else ''} acc{readings[0]}")
    fits = {0: "fits neither acc4 nor acc8", 2: "fits both acc4 and acc8"}.get(len(counted_in)) or f"reads acc{counted_in[0]}"
    count_reads = f"the line count {fits} (centre counted in W / R)"
    if on_top and len(counted_in) == 1 and 1 in spacing.gaps:  # neighbouring lines: a random draw, not a step
        return Guess(counted_in[0], False, f"{seen}: the mean spacing reads acc{on_top[0]} (centre on top), {count_reads}; "
                                           f"neighbouring outside lines mark a random draw")
    if on_top:
        return Guess(on_top[0], False, f"{seen}: the mean spacing reads acc{on_top[0]} (centre on top), {count_reads}")
    return Guess(nearest, False, f"{seen}: no step of 4 or 8, and {count_reads}: between the accelerations")


def rule_anatomy_guess(evidence: VolumeEvidence) -> Guess:
    """brain or knee from H, checked against the zero-filled intensity (see the module docstring)."""
    intensity = float(np.percentile(evidence.zero_filled, 99))
    by_intensity = "brain" if intensity >= BRAIN_KNEE_INTENSITY else "knee"
    by_height = ANATOMY_HEIGHTS.get(evidence.height)
    seen = f"H {evidence.height}, zero-filled 99th percentile {intensity:.2e}"
    if by_height is None:
        return Guess(by_intensity, False, f"{seen}: H is neither 768 (brain) nor 640 (knee); the intensity says {by_intensity}")
    if by_height != by_intensity:
        return Guess(by_height, False, f"{seen}: H says {by_height}, the intensity says {by_intensity}")
    return Guess(by_height, True, seen)


class Router:
    """``router: rule`` or ``router: classifier`` (an :class:`~utils.experts.classifier.AnatomyClassifier`,
    needed by ``classifier``, optional for ``rule``: it is then the fallback when the rule is unsure)."""

    def __init__(self, kind: str, classifier: torch.nn.Module | None = None, device: torch.device | str = "cpu"):
        if kind not in ROUTERS:
            raise ValueError(f"unknown router {kind!r}; choose one of {list(ROUTERS)}")
        if kind == "classifier" and classifier is None:
            raise ValueError("router 'classifier' needs a classifier")
        self.kind, self.classifier, self.device = kind, classifier, torch.device(device)

    def classifier_guess(self, evidence: VolumeEvidence) -> Guess:
        from utils.experts.classifier import predict_anatomy  # torch model code only when a classifier is used

        anatomy, probability = predict_anatomy(self.classifier, evidence.zero_filled, self.device)
        why = f"classifier p({anatomy}) = {probability:.3f} over {len(evidence.zero_filled)} slices"
        return Guess(anatomy, probability >= CLASSIFIER_CONFIDENCE, why)

    def anatomy(self, evidence: VolumeEvidence) -> tuple[Guess, str | None]:
        """The anatomy guess and, when the primary source was unsure, why and what was used instead."""
        rule = rule_anatomy_guess(evidence)
        primary = rule if self.kind == "rule" else self.classifier_guess(evidence)
        if primary.sure:
            return primary, None
        other = None
        if self.kind == "classifier":
            other = rule
        elif self.classifier is not None:
            other = self.classifier_guess(evidence)
        if other is not None and other.sure:
            return other, f"{primary.why}; used {other.value} from the {'rule' if self.kind == 'classifier' else 'classifier'} ({other.why})"
        return primary, f"{primary.why}; kept {primary.value}" + (f" (the fallback is unsure too: {other.why})" if other else "")

    def route(self, evidence: VolumeEvidence) -> RouteDecision:
        anatomy, anatomy_unsure = self.anatomy(evidence)
        acceleration = acceleration_guess(evidence.mask)
        acceleration_unsure = None if acceleration.sure else f"{acceleration.why}; kept acc{acceleration.value}"
        return RouteDecision(str(anatomy.value), int(acceleration.value), anatomy_unsure, acceleration_unsure,
                             f"{anatomy.why}; {acceleration.why}")
