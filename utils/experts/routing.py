"""Which expert reconstructs a volume: its anatomy and acceleration, estimated from the data alone.

A volume is routed once, from its mask and the zero-filled images of its central slices
(:func:`read_evidence`); file names are never read. The acceleration comes from the mask's sampled fraction
(:func:`acceleration_guess`), the anatomy from the k-space height checked against the zero-filled intensity
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
from utils.errors import file_error
from utils.mri.acs import acs_bounds

__all__ = [
    "ROUTERS",
    "ACCELERATION_BOUNDARY",
    "BRAIN_KNEE_INTENSITY",
    "Guess",
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
MAX_CENTER_FRACTION = 0.10            # the largest centre block: challenge masks 8 %, mask augmentation 7..10 %
ACC8_MAX_FRACTION = 1 / 8 + MAX_CENTER_FRACTION * (1 - 1 / 8)  # 0.2125
FRACTION_MARGIN = 0.005               # about 2 lines of W = 400: fastMRI's rounding of spacing and centre
ACCELERATION_BOUNDARY = ACC8_MAX_FRACTION + FRACTION_MARGIN    # 0.2175
PLAUSIBLE_FRACTIONS = (0.08, 0.40)    # every acc4/acc8 mask family samples within
IRREGULAR_MARGIN = 0.025              # about 10 lines of W = 400: the spread of the random family's line count
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


def irregular_lines(mask: np.ndarray) -> bool:
    """Whether the lines outside the centre block of a (W,) mask have more than two distinct gaps (equispaced
    and magic masks have one per side, the fraction families two through rounding, random masks many)."""
    sampled = np.asarray(mask) > 0
    try:
        start, stop = acs_bounds(sampled)
    except ValueError:  # no centre block: every line counts
        start = stop = len(sampled) // 2
    gaps = set(np.diff(np.flatnonzero(sampled[:start])).tolist()) | set(np.diff(np.flatnonzero(sampled[stop:])).tolist())
    return len(gaps) > 2


def acceleration_guess(mask: np.ndarray) -> Guess:
    """acc4 or acc8 from the sampled fraction of a (W,) mask (see the module docstring)."""
    fraction = float(np.mean(np.asarray(mask) > 0))
    acceleration = 4 if fraction >= ACCELERATION_BOUNDARY else 8
    low, high = PLAUSIBLE_FRACTIONS
    if ACCELERATION_BOUNDARY - IRREGULAR_MARGIN <= fraction < ACCELERATION_BOUNDARY and irregular_lines(mask):
        return Guess(acceleration, False, f"sampled fraction {fraction:.3f} of irregularly spaced lines is less than "
                                          f"{IRREGULAR_MARGIN} below the acc4/acc8 boundary {ACCELERATION_BOUNDARY:.4f}")
    if ACC8_MAX_FRACTION + 1e-9 < fraction < ACCELERATION_BOUNDARY + FRACTION_MARGIN:
        return Guess(acceleration, False, f"sampled fraction {fraction:.3f} is within {FRACTION_MARGIN} of the acc4/acc8 boundary "
                                          f"{ACCELERATION_BOUNDARY:.4f}, above every acc8 mask's {ACC8_MAX_FRACTION:.4f}")
    if not low <= fraction <= high:
        return Guess(acceleration, False, f"sampled fraction {fraction:.3f} is outside {low}..{high}, where acc4 and acc8 masks lie")
    return Guess(acceleration, True, f"sampled fraction {fraction:.3f}")


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
