"""The training transform: MRAugment, then mask augmentation, then the mask and the optional coil compression.

``TrainingTransform(raw, rng) -> Sample`` has the signature of every dataset transform (see
:mod:`utils.data.transforms`). All its draws come from ``rng``, the dataset's generator for
``(seed, epoch, example)``, in a fixed order, so an epoch's augmentations are the same with any number of
DataLoader workers and after a resume. The epoch (which sets the schedule's probability) is the transform's
only state: :meth:`set_epoch` is called by the dataset's ``set_epoch`` and the state dict goes into checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from utils.data.augment.mraugment import AUGMENTATIONS, augment_box_mask, augment_kspace, draw_params
from utils.data.augment.schedule import AugmentSchedule
from utils.data.mask_types import MASK_TYPES, sample_mask
from utils.data.transforms import Compressor, RawSlice, Sample, box_tensors, to_sample

__all__ = ["ENTRY_MASK_WEIGHTS", "ImageAugment", "MaskAugment", "TrainingTransform"]

# how often the entry draws each mask type (normalised by their sum)
ENTRY_MASK_WEIGHTS = {"equispaced": 0.25, "equispaced_fraction": 0.25, "random": 0.25, "magic": 0.125, "magic_fraction": 0.125}


@dataclass(frozen=True)
class ImageAugment:
    """MRAugment's settings: per-augmentation weights (times the schedule's probability) and value ranges."""

    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AUGMENTATIONS, 1.0))
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    max_translation: tuple[float, float] = (0.125, 0.08)  # fractions of (W, H)
    max_shear_deg: float = 10.0

    def __post_init__(self):
        unknown = sorted(set(self.weights) - set(AUGMENTATIONS))
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
        if any(not 0.0 <= float(w) <= 1.0 for w in self.weights.values()):
            raise ValueError(f"augmentation weights must lie in [0, 1], got {dict(self.weights)}")
        low, high = self.scale_range
        if not 0.0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {list(self.scale_range)}")

    def updated(self, overrides: Mapping[str, Any]) -> "ImageAugment":
        """These settings with ``overrides`` (setting -> value) applied; ``weights`` merge per augmentation, so
        ``{"weights": {"flip_h": 0.4}}`` changes that weight alone."""
        names = [item.name for item in fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown MRAugment setting(s) {unknown}; choose from {names}")
        changes = {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}
        if "weights" in changes:
            changes["weights"] = {**self.weights, **changes["weights"]}
        return replace(self, **changes)


@dataclass(frozen=True)
class MaskAugment:
    """With the schedule's probability, a mask of a random fastMRI type replaces the acquisition's mask.

    The type is drawn with probabilities proportional to ``weights`` (type -> weight; the entry's by
    default), the acceleration is the example's (4 or 8; with duplication every slice comes once at each),
    the centre fraction uniform in ``center_fraction_range``.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(ENTRY_MASK_WEIGHTS))
    center_fraction_range: tuple[float, float] = (0.07, 0.10)

    def __post_init__(self):
        unknown = sorted(set(self.weights) - set(MASK_TYPES))
        if unknown or not self.weights:
            raise ValueError(f"mask weights must name a non-empty subset of {list(MASK_TYPES)}, got {list(self.weights)}")
        values = [float(value) for value in self.weights.values()]
        if any(not value >= 0 for value in values) or sum(values) <= 0:
            raise ValueError(f"mask weights must be >= 0 with a positive sum, got {dict(self.weights)}")
        low, high = self.center_fraction_range
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"center_fraction_range must be 0 < low <= high < 1, got {list(self.center_fraction_range)}")

    def draw(self, rng: np.random.Generator, probability: float, raw: RawSlice) -> np.ndarray:
        replace = rng.uniform() < probability
        kinds = list(self.weights)
        probabilities = np.array([float(self.weights[kind]) for kind in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=probabilities / probabilities.sum()))]
        center_fraction = rng.uniform(*self.center_fraction_range)
        if not replace:
            return raw.mask
        return sample_mask(kind, raw.kspace.shape[-1], raw.acceleration, center_fraction, rng)


class TrainingTransform:
    """``(raw, rng) -> Sample`` with MRAugment and/or mask augmentation under one probability schedule.

    ``image_by_anatomy`` (anatomy -> settings) replaces ``image`` for the slices of that anatomy, e.g. a lower
    flip weight for brain than for knee. The draws are the same in number and order whatever the settings, so
    they stay a function of ``(seed, epoch, example)``.
    """

    def __init__(
        self,
        schedule: AugmentSchedule,
        image: ImageAugment | None = None,
        mask: MaskAugment | None = None,
        compressor: Compressor | None = None,
        image_by_anatomy: Mapping[str, ImageAugment] | None = None,
    ):
        self.schedule, self.image, self.mask, self.compressor = schedule, image, mask, compressor
        self.image_by_anatomy = dict(image_by_anatomy or {})
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def probability(self) -> float:
        return self.schedule.probability(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "probability": self.probability}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(int(state["epoch"]))

    def __call__(self, raw: RawSlice, rng: np.random.Generator) -> Sample:
        probability = self.probability
        moved_boxes = None  # the lesion-box mask, moved with the image
        image = self.image_by_anatomy.get(raw.anatomy, self.image)
        if image is not None and raw.target is not None:
            params = draw_params(rng, probability, image.weights, raw.kspace.shape[-2:], image.max_rotation_deg,
                                 image.scale_range, image.max_translation, image.max_shear_deg)
            if not params.is_identity:
                kspace, target = augment_kspace(raw.kspace, params)
                if raw.boxes:
                    moved_boxes = augment_box_mask(box_tensors(raw.boxes, True, raw.fname)[1].numpy(), params, raw.kspace.shape[-2:])
                raw = raw._replace(kspace=kspace, target=target)
        mask = raw.mask if self.mask is None else self.mask.draw(rng, probability, raw)
        return to_sample(raw, mask, self.compressor, moved_boxes)
