"""Sizes of the synthetic datasets.

``tiny`` is what the tests use (seconds), ``demo`` is what the CPU demo trains on (minutes to make),
``full`` has the real challenge's counts (SPEC §1): 85 + 15 volumes per anatomy x acceleration for train and
val (340 + 60 files) and 29 + 29 leaderboard volumes per acceleration, with the real geometry, coil counts
and slice counts. ``python -m utils.data.synthetic --preset full --estimate`` prints its disk size.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AnatomyGeometry", "Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class AnatomyGeometry:
    """What varies between volumes of one anatomy; one value of each tuple is drawn per volume."""

    height: int  # readout lines H (2x oversampled in the real data)
    widths: tuple[int, ...]  # phase-encode columns W
    coils: tuple[int, ...]
    coil_weights: tuple[float, ...]
    slices: tuple[int, int]  # inclusive range
    pixel_mm: float
    target_max: tuple[float, float]  # range of the volume max of image_label (SPEC §1: ~5e-4 brain, ~1e-4 knee)
    noise_level: tuple[float, float]  # range of the RSS noise floor as a fraction of the volume max


@dataclass(frozen=True)
class Preset:
    """File counts: per (anatomy, acceleration) for train/val, per anatomy and acceleration for the leaderboard."""

    name: str
    train_per_group: int
    val_per_group: int
    leaderboard_per_anatomy: int
    brain: AnatomyGeometry
    knee: AnatomyGeometry

    def geometry(self, anatomy: str) -> AnatomyGeometry:
        return self.brain if anatomy == "brain" else self.knee


def _brain(coils, coil_weights, slices) -> AnatomyGeometry:
    return AnatomyGeometry(768, (384, 392, 396, 396, 400), coils, coil_weights, slices, 0.55, (3e-4, 7e-4), (0.010, 0.025))


def _knee(coils, coil_weights, slices) -> AnatomyGeometry:
    return AnatomyGeometry(640, (320, 344, 368, 368, 372, 400, 480), coils, coil_weights, slices, 0.45, (0.6e-4, 1.6e-4), (0.02, 0.04))


PRESETS = {
    "tiny": Preset("tiny", 1, 1, 1, _brain((4,), (1.0,), (2, 2)), _knee((4,), (1.0,), (2, 2))),
    "demo": Preset("demo", 3, 1, 2, _brain((4,), (1.0,), (4, 6)), _knee((4,), (1.0,), (4, 6))),
    "full": Preset(
        "full",
        85,
        15,
        29,
        _brain((4, 8, 12, 16, 20), (0.04, 0.06, 0.1, 0.45, 0.35), (16, 20)),
        _knee((8, 15, 16, 20), (0.05, 0.6, 0.2, 0.15), (10, 16)),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
