"""Axial brain magnitude volumes rendered from the MNI152 2009 template bundled with nilearn.

The anatomy inside the skull is real (the ICBM 2009 nonlinear average of 152 adults, 1 mm isotropic): the
skull-stripped T1 template supplies texture and the grey-matter, white-matter and brain-mask probability maps
supply the tissue classes from which T1, T1POST, T2 and FLAIR contrasts are mixed. Skull and scalp are not in
the template, so each slice gets a procedural CSF/meninges, cortical-bone and scalp layer built from a 2-D
distance transform of the brain outline.

Output orientation follows the fastMRI brain display: rows (H) run anterior (row 0) to posterior, columns (W)
run from the patient's right to left (radiological), slices run inferior to superior. ``grid_shape`` is the
full k-space matrix including the 2x readout oversampling along H, so the head fills about the central half
of H and most of W.
"""
from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from utils.data.synthetic.edges import smooth_step
from utils.data.synthetic.phantom import Phantom

__all__ = ["BRAIN_CONTRASTS", "render_brain", "render_brain_volume"]

BRAIN_CONTRASTS = ("T1", "T1POST", "T2", "FLAIR")

# Mean T1-template value of voxels dominated by each tissue; the residual of the template around this
# prediction is the texture (deep nuclei, partial volume) that every contrast inherits.
_T1_TISSUE_MEANS = {"gm": 0.65, "wm": 0.84, "csf": 0.39}

# Relative signal levels per contrast. "texture" scales the template residual (negative for T2-weighted
# contrasts, where T1-bright tissue tends to be dark). Bone is near zero in every contrast; fat stays bright
# in fast-spin-echo T2 and FLAIR, which is why the scalp is visible in all four.
_LEVELS = {
    "T1": dict(gm=0.60, wm=0.86, csf=0.10, texture=1.0, meninges=0.12, bone=0.03, diploe=0.45, fat=1.00, skin=0.55),
    "T1POST": dict(gm=0.62, wm=0.82, csf=0.12, texture=0.9, meninges=0.60, bone=0.03, diploe=0.45, fat=1.00,
                   skin=0.55),
    "T2": dict(gm=0.50, wm=0.34, csf=1.00, texture=-0.7, meninges=0.85, bone=0.02, diploe=0.30, fat=0.62, skin=0.40),
    "FLAIR": dict(gm=0.62, wm=0.45, csf=0.06, texture=-0.6, meninges=0.15, bone=0.02, diploe=0.30, fat=0.58,
                  skin=0.40),
}

_PAD_MM = 40  # template planes are padded so that skull and scalp (< ~25 mm beyond the brain) fit


class _Template(NamedTuple):
    """MNI152 maps as float32 ``(X, Y, Z)`` arrays at 1 mm; voxel (i, j, k) sits at ``origin_mm + (i, j, k)``."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    origin_mm: np.ndarray  # (3,) MNI mm of voxel (0, 0, 0)
    center_mm: np.ndarray  # (2,) in-plane (x, y) MNI mm of the brain's bounding-box centre
    valid_z: tuple[int, int]  # first and last voxel plane a slice may be taken from


@functools.lru_cache(maxsize=1)
def _load_template() -> _Template:
    """Load the MNI152 T1, GM, WM and brain-mask maps once per process (about 0.7 s, from the nilearn wheel)."""
    from nilearn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = [
            datasets.load_mni152_template(resolution=1),
            datasets.load_mni152_gm_template(resolution=1),
            datasets.load_mni152_wm_template(resolution=1),
            datasets.load_mni152_brain_mask(resolution=1),
        ]
    t1, gm, wm, mask = (np.asarray(image.get_fdata(), dtype=np.float32) for image in images)
    affine = images[0].affine
    if not np.allclose(np.abs(np.diag(affine)[:3]), 1.0):
        raise ValueError("The nilearn MNI152 template is expected at 1 mm isotropic resolution.")
    origin_mm = affine[:3, 3].astype(np.float64)

    inside = np.nonzero(mask > 0.5)
    center_vox = [(axis.min() + axis.max()) / 2.0 for axis in inside[:2]]
    center_mm = origin_mm[:2] + np.asarray(center_vox)
    # Slices need a real brain cross-section: skip the thin vertex cap and stop above the skull base, where
    # the real head has orbits and sinuses that this model has no anatomy for.
    area = (mask > 0.5).sum(axis=(0, 1))
    valid = np.nonzero(area >= 0.2 * area.max())[0]
    lowest = max(int(valid[0]), int(round(-30.0 - origin_mm[2])))
    return _Template(t1, gm, wm, mask, origin_mm, center_mm, (lowest, int(valid[-1])))


def _slice_positions(rng: np.random.Generator, num_slices: int, valid_z: tuple[int, int]) -> np.ndarray:
    """Template z (voxel units = mm) of ``num_slices`` consecutive axial slices, 5-7 mm apart, inside the brain."""
    lowest, highest = valid_z
    span_available = float(highest - lowest)
    spacing = rng.uniform(5.0, 7.0)
    if num_slices > 1:
        spacing = min(spacing, span_available / (num_slices - 1))
    span = spacing * (num_slices - 1)
    start = lowest + rng.uniform(0.0, max(span_available - span, 0.0))
    return start + spacing * np.arange(num_slices)


def _plane(volume: np.ndarray, z: float) -> np.ndarray:
    """Linearly interpolated axial plane ``(X, Y)`` of a template volume at voxel height ``z``."""
    k = min(int(np.floor(z)), volume.shape[2] - 2)
    frac = z - k
    return (1.0 - frac) * volume[:, :, k] + frac * volume[:, :, k + 1]


def _hull_distances_mm(mask_plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) that place the skull around one binary brain-mask plane ``(X, Y)``.

    Returns (signed distance to the skull's inner surface, > 0 outside; distance to the brain, 0 inside it).
    The inner table of the skull does not follow sulci, the interhemispheric fissure or the gaps between
    temporal lobes and cerebellum, so the outline is smoothed, dilated by 1.5 mm and closed with a 15 mm disk.
    """
    smooth = ndimage.gaussian_filter(mask_plane.astype(np.float32), 1.5) > 0.3
    dilated = ndimage.distance_transform_edt(~smooth) <= 16.5
    hull = ndimage.distance_transform_edt(dilated) > 15.0
    signed = ndimage.distance_transform_edt(~hull) - ndimage.distance_transform_edt(hull)
    return signed.astype(np.float32), ndimage.distance_transform_edt(~mask_plane).astype(np.float32)


def _brain_signal(template: _Template, z: float, levels: dict) -> tuple[np.ndarray, np.ndarray]:
    """Contrast-weighted brain signal and brain-mask probability on one padded template plane, each ``(X, Y)``."""
    t1, gm, wm, mask = (_plane(volume, z) for volume in (template.t1, template.gm, template.wm, template.mask))
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    predicted_t1 = _T1_TISSUE_MEANS["gm"] * gm + _T1_TISSUE_MEANS["wm"] * wm + _T1_TISSUE_MEANS["csf"] * csf
    signal = levels["gm"] * gm + levels["wm"] * wm + levels["csf"] * csf + levels["texture"] * (t1 - predicted_t1)
    signal = np.clip(signal, 0.0, None) * (mask > 0.0)
    pad = ((_PAD_MM, _PAD_MM), (_PAD_MM, _PAD_MM))
    return np.pad(signal, pad), np.pad(mask, pad)


def _layer_thicknesses(rng: np.random.Generator) -> dict:
    """Per-volume random thickness (mm) of the meninges, bone, fat and skin layers and their angular variation."""
    return dict(
        meninges=rng.uniform(1.2, 2.2),
        bone=rng.uniform(4.0, 7.0),
        fat=rng.uniform(4.0, 7.0),
        skin=rng.uniform(1.2, 2.0),
        # Fourier coefficients of a smooth relative thickness change around the head (orders 1..3)
        harmonics=rng.normal(0.0, 0.12, size=(3, 2)),
    )


def _skull_and_scalp(distance_mm: np.ndarray, angle: np.ndarray, layers: dict, levels: dict,
                     edge_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Signal of the layers outside the skull's inner surface and the head's soft support ``(h, w)``.

    ``distance_mm`` is the signed distance to the inner surface (> 0 outside); layer thicknesses vary
    smoothly with ``angle`` (radians around the head centre). Returns (layer signal, head weight), where the
    head weight is 1 inside the skin and falls to exactly 0 one edge width outside it.
    """
    order = np.arange(1, 4)[:, None, None]
    modulation = np.clip(1.0 + np.sum(layers["harmonics"][:, 0, None, None] * np.cos(order * angle)
                              + layers["harmonics"][:, 1, None, None] * np.sin(order * angle), axis=0), 0.6, 1.4)
    edges = np.cumsum([layers["meninges"], layers["bone"], layers["fat"], layers["skin"]])
    edges = edges[:, None, None] * modulation  # (4, h, w) outer edge of each layer in mm
    inside = [smooth_step((edge - distance_mm) / edge_mm) for edge in edges]  # 1 inside each outer edge
    bone_mid = 0.5 * (edges[0] + edges[1])
    # Diploe: a thin fatty marrow band in the middle of thick bone (bright in T1)
    diploe_amount = np.clip(0.3 + 2.0 * (modulation - 1.0), 0.0, 0.6)  # more marrow where the bone is thick
    diploe = np.exp(-(((distance_mm - bone_mid) / (0.2 * (edges[1] - edges[0]))) ** 2)) * diploe_amount
    bone = levels["bone"] + (levels["diploe"] - levels["bone"]) * diploe
    signal = (inside[0] * levels["meninges"] + (inside[1] - inside[0]) * bone
              + (inside[2] - inside[1]) * levels["fat"] + (inside[3] - inside[2]) * levels["skin"])
    return signal, inside[3]


def _texture(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float, amplitude: float) -> np.ndarray:
    """Multiplicative band-limited texture ``1 + amplitude * n``, n a smooth unit-variance field of ``shape``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=(0, sigma_px, sigma_px))
    field /= field.std() + 1e-12
    return 1.0 + amplitude * field


def _head_region(template: _Template, transform: dict, grid_shape: tuple[int, int],
                 pixel_mm: float) -> tuple[slice, slice]:
    """Rows and columns of the output grid that can contain the head (brain box plus scalp margin)."""
    inside = np.nonzero(template.mask > 0.5)
    lo = template.origin_mm[:2] + np.array([axis.min() for axis in inside[:2]]) - 35.0
    hi = template.origin_mm[:2] + np.array([axis.max() for axis in inside[:2]]) + 35.0
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
    rows, cols = _head_to_pixels(corners[:, 0], corners[:, 1], template, transform, grid_shape, pixel_mm)
    height, width = grid_shape
    row_slice = slice(max(int(np.floor(rows.min())), 0), min(int(np.ceil(rows.max())) + 1, height))
    col_slice = slice(max(int(np.floor(cols.min())), 0), min(int(np.ceil(cols.max())) + 1, width))
    return row_slice, col_slice


def _head_to_pixels(x_mm, y_mm, template, transform, grid_shape, pixel_mm):
    """Output (row, col) of MNI in-plane points under the volume's rotation, scale and shift."""
    dx = x_mm - template.center_mm[0]
    dy = y_mm - template.center_mm[1]
    cos, sin = np.cos(transform["angle"]), np.sin(transform["angle"])
    # image mm: right-of-image = patient's left (-x), down = posterior (-y)
    across = transform["scale"] * (-(cos * dx - sin * dy)) + transform["shift"][1]
    down = transform["scale"] * (-(sin * dx + cos * dy)) + transform["shift"][0]
    return (grid_shape[0] - 1) / 2.0 + down / pixel_mm, (grid_shape[1] - 1) / 2.0 + across / pixel_mm


def _pixels_to_head(rows, cols, template, transform, grid_shape, pixel_mm):
    """MNI in-plane (x, y) mm of output pixels: the inverse of :func:`_head_to_pixels`."""
    down = (rows - (grid_shape[0] - 1) / 2.0) * pixel_mm - transform["shift"][0]
    across = (cols - (grid_shape[1] - 1) / 2.0) * pixel_mm - transform["shift"][1]
    cos, sin = np.cos(transform["angle"]), np.sin(transform["angle"])
    u = -across / transform["scale"]  # = cos*dx - sin*dy
    v = -down / transform["scale"]  # = sin*dx + cos*dy
    return template.center_mm[0] + cos * u + sin * v, template.center_mm[1] - sin * u + cos * v


def _render_slice(template: _Template, z: float, levels: dict, coords: np.ndarray, angle: np.ndarray, layers: dict,
                  edge_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """One axial slice on the head region: (magnitude, white-matter probability), each (h, w)."""
    signal_plane, mask_plane = _brain_signal(template, z, levels)
    distance_plane, brain_distance_plane = _hull_distances_mm(mask_plane > 0.5)
    signal = ndimage.map_coordinates(signal_plane, coords, order=1)
    brain = np.clip(ndimage.map_coordinates(mask_plane, coords, order=1), 0.0, 1.0)
    distance = ndimage.map_coordinates(distance_plane, coords, order=1, mode="nearest")
    brain_distance = ndimage.map_coordinates(brain_distance_plane, coords, order=1, mode="nearest")
    layer_signal, head = _skull_and_scalp(distance, angle, layers, levels, edge_mm)
    # Inside the hull the brain is bathed in CSF; wide gaps far from the brain (skull base between
    # temporal lobes and cerebellum) are bone instead.
    in_hull = smooth_step(-distance / edge_mm)
    near_brain = smooth_step((3.0 - brain_distance) / 1.5)
    gap_fill = levels["csf"] * near_brain + levels["bone"] * (1.0 - near_brain)
    region = signal + (1.0 - brain) * (in_hull * gap_fill + (1.0 - in_hull) * layer_signal)
    white_plane = np.pad(_plane(template.wm, z), _PAD_MM)
    white = np.clip(ndimage.map_coordinates(white_plane, coords, order=1), 0.0, 1.0)
    return region * (head > 0.0), white


def render_brain(rng: np.random.Generator, num_slices: int, grid_shape: tuple[int, int], pixel_mm: float,
                 contrast: str) -> Phantom:
    """Render an axial multi-slice brain on the full k-space image grid, with its white matter as lesion host.

    Args:
        rng: source of all randomness (slice positions, in-plane pose, skull thickness, texture).
        num_slices: number of consecutive axial slices (5-7 mm apart, inferior to superior).
        grid_shape: (H, W) image grid, H along the oversampled readout (anterior to posterior).
        pixel_mm: in-plane pixel size in mm (about 0.5-0.6 for the challenge's 768 x 396 brain matrix).
        contrast: one of :data:`BRAIN_CONTRASTS`.

    Returns:
        :class:`Phantom`: float32 ``(num_slices, H, W)`` magnitude with volume maximum 1 and background
        exactly 0; host ``white_matter`` (the template's white-matter probability); slice heights in mm.
    """
    if contrast not in _LEVELS:
        raise ValueError(f"Unknown brain contrast {contrast!r}; expected one of {BRAIN_CONTRASTS}.")
    template = _load_template()
    levels = _LEVELS[contrast]
    z_planes = _slice_positions(rng, num_slices, template.valid_z)
    transform = dict(angle=np.deg2rad(rng.uniform(-8.0, 8.0)), scale=rng.uniform(0.92, 1.08),
                     shift=rng.uniform(-8.0, 8.0, size=2))
    layers = _layer_thicknesses(rng)

    row_slice, col_slice = _head_region(template, transform, grid_shape, pixel_mm)
    rows, cols = np.meshgrid(np.arange(row_slice.start, row_slice.stop, dtype=np.float64),
                             np.arange(col_slice.start, col_slice.stop, dtype=np.float64), indexing="ij")
    x_mm, y_mm = _pixels_to_head(rows, cols, template, transform, grid_shape, pixel_mm)
    # coordinates into the padded template planes (voxel = mm offset from the origin)
    coords = np.stack([x_mm - template.origin_mm[0] + _PAD_MM, y_mm - template.origin_mm[1] + _PAD_MM])
    angle = np.arctan2(y_mm - template.center_mm[1], x_mm - template.center_mm[0])
    # layer edges are about one output pixel wide, expressed in head mm
    edge_mm = pixel_mm / transform["scale"]

    region = np.empty((num_slices,) + rows.shape, dtype=np.float32)
    white = np.zeros((num_slices,) + tuple(grid_shape), dtype=np.float32)
    for index, z in enumerate(z_planes):
        region[index], white[index, row_slice, col_slice] = _render_slice(
            template, z, levels, coords, angle, layers, edge_mm)

    region *= _texture(rng, region.shape, sigma_px=2.0, amplitude=0.03)
    volume = np.zeros((num_slices,) + tuple(grid_shape), dtype=np.float32)
    volume[:, row_slice, col_slice] = np.clip(region, 0.0, None)
    peak = float(volume.max())
    hosts = {"white_matter": white}
    return Phantom(volume / peak, hosts, {"white_matter": white >= 0.5}, np.asarray(z_planes, dtype=np.float64), 1.0 / peak)


def render_brain_volume(rng: np.random.Generator, num_slices: int, grid_shape: tuple[int, int], pixel_mm: float,
                        contrast: str) -> np.ndarray:
    """The magnitude volume of :func:`render_brain`: float32 ``(num_slices, H, W)``, maximum 1."""
    return render_brain(rng, num_slices, grid_shape, pixel_mm, contrast).volume
