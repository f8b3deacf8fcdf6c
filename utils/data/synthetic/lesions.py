"""Synthetic lesions: small focal signal changes drawn into the object before coils, noise and k-space.

SYNTHETIC, NOT PATHOLOGY. These are blobs of plausible size and signal in plausible tissue, so that the
2026 score's lesion boxes (SSIM_bbox) can be developed and tested without the challenge data; they are not
models of real disease. Their labels are fastMRI+'s label texts, so per-label figures read alike on both.

Per volume, from its own random stream (so everything else in the volume is bit-identical to a volume
without lesions):

- **How many**: 0, 1, 2 or 3 with probabilities ``COUNT_PROBABILITIES`` (0.15, 0.35, 0.30, 0.20).
- **Which**: a :class:`LesionKind` of the anatomy, by its weight, among the kinds whose host tissue appears
  in the central 320 x 320 window of some slice.
- **Where**: centred on a random pixel of that window among the renderer's sites for the tissue (where it
  dominates, occupancy >= 0.5; for oedema also near the joint line), on a random slice; the window is shrunk
  by the lesion's radius, so every lesion lies inside both fastMRI's 320 crop and the challenge's 384 crop.
- **Shape**: an ellipsoid with an irregular outline (2nd and 3rd angular harmonics up to 12 %), long in-plane
  diameter drawn log-uniform from the kind's range, an elongation, a random in-plane angle (tears: nearly
  horizontal) and a through-plane diameter; on each slice the cross-section of the ellipsoid, with a soft
  edge (wide for oedema). Its weight is that shape times the host occupancy, so a lesion stays in its tissue.
- **Signal**: ``image <- image + weight * (level * level_scale - image)``, ``level`` drawn from the kind's range
  for the contrast, in the units of the renderer's tissue table (:class:`utils.data.synthetic.phantom.Phantom`).
- **Boxes**: on every slice the lesion reaches, the tight box around the pixels where its weight is at least
  0.25 (its visible extent, soft margin included), in the (H, W) grid;
  :func:`utils.data.annotations.crop_box` moves them into image_label's 384 space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from utils.data.annotations import Box, bounding_box
from utils.data.synthetic.edges import smooth_step
from utils.data.synthetic.phantom import Phantom

__all__ = ["COUNT_PROBABILITIES", "LesionKind", "LESION_KINDS", "add_lesions"]

COUNT_PROBABILITIES = (0.15, 0.35, 0.30, 0.20)  # P(0, 1, 2, 3 lesions) per volume
_WINDOW = 320  # lesions lie in the central 320 x 320 of the grid: inside fastMRI's and the challenge's crops
_BOX_WEIGHT = 0.25  # a box holds the pixels where the lesion weighs at least this much
_MIN_SECTION = 0.3  # slices that cut the ellipsoid's cap thinner than this fraction of its size are skipped


@dataclass(frozen=True)
class LesionKind:
    """One kind of synthetic lesion: its label, tissue, frequency, geometry and signal per contrast."""

    label: str  # fastMRI+'s label text
    host: str  # key of Phantom.hosts
    weight: float  # relative frequency among the anatomy's kinds
    diameter_mm: tuple[float, float]  # long in-plane diameter, drawn log-uniform
    elongation: tuple[float, float]  # long / short in-plane diameter
    depth: tuple[float, float]  # through-plane diameter / long in-plane diameter
    edge: float  # width of the soft edge, as a fraction of the short radius
    max_angle_deg: float  # in-plane angle drawn from +-this
    levels: dict[str, tuple[float, float]]  # contrast -> range of the lesion's signal (renderer tissue units)


# Signal levels against the renderers' tissue tables (brain: wm FLAIR 0.45, T2 0.34, T1 0.86, gm 0.5-0.62,
# T2 CSF 1.0; knee: marrow PD 0.86 / PDFS 0.09, cartilage ~0.55, meniscus ~0.05, fluid PD 0.74 / PDFS 1.0).
LESION_KINDS: dict[str, tuple[LesionKind, ...]] = {
    "brain": (
        # white-matter hyperintensity: bright on FLAIR and T2, dark (hypointense) on T1 and non-enhancing on T1POST
        LesionKind("Nonspecific white matter lesion", "white_matter", 1.0, (4.0, 18.0), (1.0, 1.8), (0.8, 1.6), 0.3,
                   180.0, {"FLAIR": (0.80, 0.95), "T2": (0.70, 0.85), "T1": (0.45, 0.60), "T1POST": (0.45, 0.60)}),
    ),
    "knee": (
        # bone-marrow oedema: water replaces fatty marrow, bright with fat suppression, darker on PD; ill-defined
        LesionKind("Bone- Subchondral edema", "marrow", 0.45, (6.0, 20.0), (1.0, 1.6), (0.6, 1.2), 0.4, 180.0,
                   {"PD": (0.50, 0.62), "PDFS": (0.55, 0.75)}),
        # cartilage defect filled with joint fluid
        LesionKind("Cartilage - Partial Thickness loss/defect", "cartilage", 0.25, (4.0, 10.0), (1.2, 2.0),
                   (0.6, 1.2), 0.2, 30.0, {"PD": (0.72, 0.80), "PDFS": (0.85, 1.00)}),
        # meniscal tear: a bright line through the dark meniscus
        LesionKind("Meniscus Tear", "meniscus", 0.30, (5.0, 10.0), (1.3, 2.0), (0.6, 1.2), 0.2, 20.0,
                   {"PD": (0.45, 0.60), "PDFS": (0.50, 0.70)}),
    ),
}


@dataclass(frozen=True)
class _Lesion:
    """One drawn lesion: centre (slice position mm, row, column), semi-axes (px), depth (mm), outline, level."""

    kind: LesionKind
    z_mm: float
    row: int
    column: int
    long_px: float
    short_px: float
    depth_mm: float
    angle: float
    harmonics: np.ndarray  # (2, 2): amplitude and phase of the 2nd and 3rd harmonic of the outline
    level: float


def _window(grid_shape: tuple[int, int], margin: int) -> tuple[slice, slice]:
    """Rows and columns of the central 320 x 320 (or narrower) part of the grid, shrunk by ``margin``."""
    spans = []
    for size in grid_shape:
        start = max(size // 2 - _WINDOW // 2, 0) + margin
        spans.append(slice(start, max(min(size // 2 + _WINDOW // 2, size) - margin, start)))
    return spans[0], spans[1]


def _candidates(sites: np.ndarray, margin: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(S, h, w) bool: the ``sites`` (S, H, W) inside the shrunk central window, and that window."""
    rows, columns = _window(sites.shape[1:], margin)
    return sites[:, rows, columns], (rows, columns)


def _draw_lesion(rng: np.random.Generator, kind: LesionKind, phantom: Phantom, contrast: str,
                 pixel_mm: float) -> _Lesion | None:
    """Draw one lesion of ``kind`` centred in its host tissue; None when the host is not in the window."""
    low, high = kind.diameter_mm
    long_px = math.exp(rng.uniform(math.log(low), math.log(high))) / pixel_mm
    short_px = long_px / rng.uniform(*kind.elongation)
    depth_mm = long_px * pixel_mm * rng.uniform(*kind.depth)
    candidates, (rows, columns) = _candidates(phantom.sites[kind.host], int(math.ceil(long_px / 2)) + 2)
    slices = np.flatnonzero(candidates.any(axis=(1, 2)))
    if slices.size == 0:
        return None
    index = int(slices[rng.integers(slices.size)])
    pixel_rows, pixel_columns = np.nonzero(candidates[index])
    pick = int(rng.integers(pixel_rows.size))
    # the centre lies within a quarter of the half-depth of the chosen slice, so that slice shows the lesion
    z_mm = float(phantom.slice_mm[index]) + rng.uniform(-0.25, 0.25) * depth_mm / 2
    angle = np.deg2rad(rng.uniform(-kind.max_angle_deg, kind.max_angle_deg))
    harmonics = np.stack([rng.uniform(0.0, 0.12, 2), rng.uniform(0.0, 2 * np.pi, 2)])
    level = rng.uniform(*kind.levels[contrast]) * phantom.level_scale
    return _Lesion(kind, z_mm, rows.start + int(pixel_rows[pick]), columns.start + int(pixel_columns[pick]),
                   long_px, short_px, depth_mm, float(angle), harmonics, float(level))


def _section_weight(lesion: _Lesion, section: float, grid_shape: tuple[int, int]) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The lesion's shape weight in [0, 1] on one slice, cut to a window around it: ((h, w), (rows, columns))."""
    semi_long, semi_short = lesion.long_px * section / 2, lesion.short_px * section / 2
    edge_px = max(1.0, lesion.kind.edge * semi_short)
    # the outline reaches 1.24 x the semi-axis, and the soft edge ends at rho = 1 + edge_px / (2 * semi_short)
    reach = int(math.ceil(1.25 * semi_long * (1.0 + edge_px / semi_short))) + 1
    rows = slice(max(lesion.row - reach, 0), min(lesion.row + reach + 1, grid_shape[0]))
    columns = slice(max(lesion.column - reach, 0), min(lesion.column + reach + 1, grid_shape[1]))
    down = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] - lesion.row
    across = np.arange(columns.start, columns.stop, dtype=np.float32)[None, :] - lesion.column
    along = (across * math.cos(lesion.angle) + down * math.sin(lesion.angle)) / semi_long
    side = (down * math.cos(lesion.angle) - across * math.sin(lesion.angle)) / semi_short
    theta = np.arctan2(side, along)
    (amplitudes, phases) = lesion.harmonics
    outline = 1.0 + amplitudes[0] * np.cos(2 * theta + phases[0]) + amplitudes[1] * np.cos(3 * theta + phases[1])
    rho = np.sqrt(along**2 + side**2) / outline
    return smooth_step((1.0 - rho) * semi_short / edge_px), (rows, columns)


def _paint_lesion(volume: np.ndarray, host: np.ndarray, slice_mm: np.ndarray, lesion: _Lesion) -> dict[int, Box]:
    """Paint ``lesion`` into ``volume`` (S, H, W) in place; its box per slice in the (H, W) grid."""
    boxes = {}
    for index, position in enumerate(slice_mm):
        offset = (position - lesion.z_mm) / (lesion.depth_mm / 2)
        section = math.sqrt(max(1.0 - offset**2, 0.0))
        if section < _MIN_SECTION:
            continue
        shape, (rows, columns) = _section_weight(lesion, section, volume.shape[1:])
        weight = shape * host[index, rows, columns]
        region = volume[index, rows, columns]
        region += (weight * (lesion.level - region)).astype(np.float32)
        box = bounding_box(weight >= _BOX_WEIGHT, lesion.kind.label)
        if box is not None:
            boxes[index] = Box(box.x + columns.start, box.y + rows.start, box.width, box.height, box.label)
    return boxes


def add_lesions(rng: np.random.Generator, phantom: Phantom, anatomy: str, contrast: str,
                pixel_mm: float) -> dict[int, list[Box]]:
    """Draw the volume's lesions into ``phantom.volume`` in place; their boxes by slice in the (H, W) grid.

    ``rng`` is the lesions' own stream; ``pixel_mm`` the in-plane pixel size of the grid.
    """
    boxes: dict[int, list[Box]] = {}
    count = int(rng.choice(len(COUNT_PROBABILITIES), p=COUNT_PROBABILITIES))
    kinds = LESION_KINDS[anatomy]
    present = [kind for kind in kinds if _candidates(phantom.sites[kind.host], 0)[0].any()]
    for _ in range(count if present else 0):
        weights = np.array([kind.weight for kind in present])
        kind = present[int(rng.choice(len(present), p=weights / weights.sum()))]
        lesion = _draw_lesion(rng, kind, phantom, contrast, pixel_mm)
        if lesion is None:
            continue
        painted = _paint_lesion(phantom.volume, phantom.hosts[kind.host], phantom.slice_mm, lesion)
        for index, box in painted.items():
            boxes.setdefault(index, []).append(box)
    return dict(sorted(boxes.items()))
