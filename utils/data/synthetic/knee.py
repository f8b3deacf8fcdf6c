"""Coronal knee magnitude volumes from a procedural phantom.

SYNTHETIC ANATOMY: unlike :mod:`utils.data.synthetic.brain`, nothing here comes from a real scan. The knee is
a hand-built 3-D model of signed-distance shapes (femur with condyles and intercondylar notch, tibia, fibular
head, patella, cartilage, menisci, ligaments, joint fluid, muscle and subcutaneous fat) whose sizes, positions
and joint angle are jittered per volume. It only has to look plausible to a reconstruction network: tissue
classes, edges and textures at the right scale and with PD / PDFS signal levels.

Phantom coordinates (mm, before the per-volume scale): ``u`` across the leg (positive = lateral), ``v`` along
the leg (positive = inferior, 0 = joint line), ``y`` anterior-posterior (positive = anterior, 0 = centre of the
femoral condyles). Output rows (H, the oversampled readout) run superior (thigh) to inferior (calf), columns
run medial-lateral (left or right knee at random) and slices run anterior to posterior, about 3 mm apart.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from utils.data.synthetic.edges import smooth_step
from utils.data.synthetic.phantom import Phantom

__all__ = ["KNEE_CONTRASTS", "render_knee", "render_knee_volume"]

KNEE_CONTRASTS = ("PD", "PDFS")

# Relative signal per tissue: fat-suppressed PD (PDFS) turns fat and fatty marrow dark and leaves joint
# fluid as the brightest tissue; menisci, ligaments and cortical bone are near zero in both.
_LEVELS = {
    "PD": dict(fat=1.00, marrow=0.86, muscle=0.36, cartilage=0.58, fluid=0.74, meniscus=0.05, cortex=0.03,
               ligament=0.08, skin=0.55),
    "PDFS": dict(fat=0.10, marrow=0.09, muscle=0.34, cartilage=0.55, fluid=1.00, meniscus=0.04, cortex=0.03,
                 ligament=0.06, skin=0.30),
}

_SLICE_RANGE_MM = (-36.0, 34.0)  # AP span (y) with bone in it: posterior condyles to the patella


def _inside(sdf: np.ndarray, width: float) -> np.ndarray:
    """Soft occupancy of a signed distance (< 0 inside): exactly 1 / 0 beyond half a ``width`` from the surface."""
    return smooth_step(-sdf / width)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two signed distances with a blend radius ``k`` (rounded joins, no creases)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _section(y: np.ndarray, center: float, depth) -> np.ndarray:
    """Relative width ``sqrt(1 - ((y - center) / depth)^2)`` of an ellipsoid cut at AP position ``y`` (0 outside)."""
    return np.sqrt(np.clip(1.0 - ((y - center) / depth) ** 2, 0.0, 1.0))


def _ellipse_sdf(u, v, cu, cv, au, av) -> np.ndarray:
    """First-order signed distance (mm) to an axis-aligned ellipse; +1e3 where a semi-axis has vanished."""
    au = np.maximum(au, 1e-3)
    av = np.maximum(av, 1e-3)
    du, dv = (u - cu) / au, (v - cv) / av
    k = np.sqrt(du * du + dv * dv) + 1e-6
    grad = np.sqrt((du / au) ** 2 + (dv / av) ** 2) / k + 1e-6
    return np.where(np.minimum(au, av) > 0.01, (k - 1.0) / grad, 1e3)


def _band_sdf(u, center, half_width) -> np.ndarray:
    """Signed distance across a vertical band; a negative ``half_width`` means the band is absent."""
    return np.abs(u - center) - np.where(half_width > 0.0, half_width, half_width - 2.0)


def _knee_parameters(rng: np.random.Generator) -> dict:
    """Per-volume anatomy: sizes (mm), positions and angles jittered around an adult knee."""
    size = rng.uniform(0.9, 1.1)
    jitter = lambda spread: rng.uniform(-spread, spread)  # noqa: E731 - short local helper
    params = dict(
        size=size,
        leg_half_width=size * np.array([70.0, 62.0, 56.0, 58.0, 60.0, 56.0]) * rng.uniform(0.92, 1.08, 6),
        leg_profile_v=np.array([-150.0, -80.0, -10.0, 40.0, 90.0, 150.0]),
        fat_mm=rng.uniform(5.0, 11.0), fat_medial_extra=rng.uniform(0.0, 6.0),
        shaft_radius=size * rng.uniform(12.5, 14.5), meta_half_width=size * rng.uniform(36.0, 42.0),
        valgus=np.deg2rad(rng.uniform(4.0, 8.0)),
        condyle_u=size * np.array([-21.0, 21.0]) + jitter(2.0), condyle_au=size * rng.uniform(15.0, 18.0, 2),
        condyle_av=size * rng.uniform(22.0, 27.0), condyle_ay=size * rng.uniform(33.0, 38.0),
        condyle_y=-5.0 + jitter(3.0),
        notch_half_width=size * rng.uniform(8.0, 11.0),
        femoral_cartilage=rng.uniform(2.0, 2.8), tibial_cartilage=rng.uniform(1.8, 2.6),
        plateau_half_width=size * rng.uniform(36.0, 41.0), tibia_shaft_radius=size * rng.uniform(13.0, 15.5),
        spine_height=rng.uniform(4.0, 8.0), tibia_angle=np.deg2rad(jitter(3.0)),
        fibula_v=size * rng.uniform(20.0, 28.0), meniscus_height=rng.uniform(6.0, 9.0),
        meniscus_length=size * rng.uniform(9.0, 13.0), effusion=rng.uniform(0.2, 1.0),
        fascia=rng.uniform(-1.0, 1.0, size=(4, 4)),
    )
    # Python floats / float32 keep the float32 images from being promoted to float64 (NumPy 2 scalar rules)
    return {key: value.astype(np.float32) if isinstance(value, np.ndarray) else float(value)
            for key, value in params.items()}


def _femur_sdf(u, v, y, p: dict) -> np.ndarray:
    """Femur: shaft flaring into the metaphysis, two condyles and the notch between them (posterior slices)."""
    flare = smooth_step((v + 55.0) / 40.0)  # 0 on the shaft (v < -75), 1 at the metaphysis (v > -35)
    half_width = p["shaft_radius"] + (p["meta_half_width"] - p["shaft_radius"]) * flare
    depth = p["shaft_radius"] + (27.0 * p["size"] - p["shaft_radius"]) * flare
    center_y = 6.0 - 4.0 * flare  # the condyles, not the metaphysis, reach far posteriorly
    section = 1.0 - ((y - center_y) / depth) ** 2
    center_u = math.tan(p["valgus"]) * np.clip(-v - 40.0, 0.0, None)  # shaft runs laterally upwards
    band = _band_sdf(u, center_u, half_width * np.sign(section) * np.sqrt(np.abs(section)))
    band = -_smin(-band, -(v + 16.0), 6.0)  # rounded lower end; the condyles continue below
    condyle_v = -(p["condyle_av"] + p["femoral_cartilage"] + 0.3)  # bone bottom just above the joint line
    condyles = [
        _ellipse_sdf(u, v, cu, condyle_v, au * g, p["condyle_av"] * g)
        for cu, au, g in zip(p["condyle_u"].tolist(), p["condyle_au"].tolist(),
                             [_section(y, p["condyle_y"], p["condyle_ay"])] * 2)
    ]
    femur = _smin(band, _smin(condyles[0], condyles[1], 5.0), 6.0)
    # notch roof rises towards posterior: shallow groove anteriorly, two separate condyles posteriorly
    roof = np.clip(-2.0 - 1.0 * (8.0 - y), -60.0, 10.0)
    notch_width = p["notch_half_width"] + 0.15 * (v - roof)
    notch = -_smin(-(np.abs(u - float(np.mean(p["condyle_u"]))) - notch_width), -(roof - v), 3.0)
    return -_smin(-femur, notch, 2.0)


def _tibia_sdf(u, v, y, p: dict) -> np.ndarray:
    """Tibia: plateau with the intercondylar spines, narrowing to the shaft (tibial coordinates)."""
    top = p["tibial_cartilage"] + 0.3
    taper = smooth_step((v - 40.0) / 45.0)  # 0 at the plateau, 1 on the shaft (v > 62)
    half_width = p["plateau_half_width"] + (p["tibia_shaft_radius"] - p["plateau_half_width"]) * taper
    depth = 27.0 * p["size"] + (p["tibia_shaft_radius"] - 27.0 * p["size"]) * taper
    section = 1.0 - ((y + 2.0 * (1.0 - taper)) / depth) ** 2
    band = _band_sdf(u, 0.0, half_width * np.sign(section) * np.sqrt(np.abs(section)))
    spines = p["spine_height"] * np.exp(-(((y + 3.0) / 12.0) ** 2)) * (
        np.exp(-(((u - 5.0) / 4.0) ** 2)) + np.exp(-(((u + 5.0) / 4.0) ** 2)))
    return -_smin(-band, -(top - spines - v), 3.0)


def _fibula_sdf(u, v, y, p: dict) -> np.ndarray:
    """Fibular head and neck on the lateral side, seen in posterior slices (tibial coordinates)."""
    lateral_u = p["plateau_half_width"] * 0.85
    head = _ellipse_sdf(u, v, lateral_u, p["fibula_v"], 9.0 * _section(y, -18.0, 11.0),
                        12.0 * _section(y, -18.0, 11.0))
    shaft = np.maximum(_band_sdf(u, lateral_u + 0.06 * (v - p["fibula_v"]), 6.0 * _section(y, -20.0, 7.0) - 0.5),
                       p["fibula_v"] - v)
    return _smin(head, shaft, 4.0)


def _patella_sdf(u, v, y, p: dict, expand_y: float = 0.0) -> np.ndarray:
    """Patella in front of the femur above the joint line (anterior slices); ``expand_y`` thickens it backwards."""
    g = _section(y, 42.0 - expand_y, 11.0 + expand_y)
    return _ellipse_sdf(u, v, 2.0, -38.0 * p["size"], 22.0 * p["size"] * g, 21.0 * p["size"] * g)


def _meniscus_sdf(u, v, y, p: dict, side: float) -> np.ndarray:
    """Meniscal wedge on one side (``side`` -1 medial, +1 lateral): base on the plateau, apex pointing inwards."""
    outer = side * (p["plateau_half_width"] + 1.0)
    # posterior horns run across the plateau, so the wedge lengthens into a band in posterior slices
    length = p["meniscus_length"] + 12.0 * smooth_step((-y - 18.0) / 10.0)
    base = p["tibial_cartilage"] * 0.5 + 0.3
    height = p["meniscus_height"]
    slope = height / length
    hypotenuse = (base - v - height + slope * side * (outer - u)) / np.sqrt(1.0 + slope**2)
    wedge = np.maximum(np.maximum(v - base, side * (u - outer)), hypotenuse)
    return np.where(_section(y, -2.0, 27.0 * p["size"]) > 0.3, wedge, 1e3)


def _slice_positions(rng: np.random.Generator, num_slices: int) -> np.ndarray:
    """AP positions (mm, anterior to posterior) of consecutive coronal slices about 3 mm apart, within the bones."""
    spacing = rng.uniform(2.8, 3.3)
    available = _SLICE_RANGE_MM[1] - _SLICE_RANGE_MM[0]
    if num_slices > 1:
        spacing = min(spacing, available / (num_slices - 1))
    span = spacing * (num_slices - 1)
    start = _SLICE_RANGE_MM[1] - rng.uniform(0.0, max(available - span, 0.0))
    return start - spacing * np.arange(num_slices)


def _anisotropic_noise(rng, shape, sigma_px: tuple[float, float]) -> np.ndarray:
    """Unit-variance smooth noise ``shape`` = (S, H, W) with Gaussian correlation ``sigma_px`` = (rows, cols)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=(0.0,) + tuple(sigma_px))
    return field / (field.std() + 1e-12)


def _paint(image: np.ndarray, alpha: np.ndarray, level) -> None:
    """Alpha-composite one tissue over the image in place: ``image = image * (1 - alpha) + level * alpha``."""
    image += alpha * (level - image)


def _soft_tissue(image, u, v, y, p, levels, edge, fibres) -> None:
    """Skin, subcutaneous fat and muscle (with fibre texture and fascia lines) of the leg, painted in place."""
    profile = np.interp(v, p["leg_profile_v"], p["leg_half_width"]).astype(np.float32)
    half_width = profile * _section(y, -8.0, 75.0 * p["size"])
    skin = _band_sdf(u, 0.0, half_width)
    _paint(image, _inside(skin, edge), levels["skin"])
    _paint(image, _inside(skin + 1.5, edge), levels["fat"])
    # subcutaneous fat is thicker over the medial side of the knee
    fat = p["fat_mm"] + p["fat_medial_extra"] * np.where(u < 0.0, np.exp(-((v / 50.0) ** 2)), np.float32(0.0))
    # Around the joint the soft tissue is mostly fat (capsule, Hoffa's pad, popliteal fossa, ligaments): an
    # elliptical fat zone that reaches the skin only near the joint line; posteriorly the gastrocnemius heads
    # reach up towards the condyles, so the zone shrinks there.
    gap = (34.0 - 14.0 * smooth_step((-y - 22.0) / 15.0)) * p["size"]
    zone = (u / (1.15 * half_width + 1e-3)) ** 2 + ((v - 5.0 - 3.0 * np.sin(u / 17.0)) / gap) ** 2
    muscle_zone = smooth_step((np.sqrt(zone) - 1.0) / 0.25)
    muscle = _inside(skin + fat, 3.0 * edge) * muscle_zone
    fascia = np.zeros_like(image)
    for offset, amplitude, phase, slant in p["fascia"].tolist():
        line_u = 45.0 * offset * half_width / 60.0 + 5.0 * amplitude * np.sin(v / 40.0 + 3.0 * phase) + 0.3 * slant * y
        fade = 0.5 + 0.5 * np.sin(v / 60.0 + 2.0 * phase)  # septa come and go along the leg
        fascia = np.maximum(fascia, fade * np.exp(-(((u - line_u) / (0.5 * edge + 0.3)) ** 2)))
    muscle_level = levels["muscle"] * (1.0 + 0.12 * fibres) * (1.0 - 0.5 * fascia)
    _paint(image, muscle, muscle_level)


def _joint(image, u, v, y, ut, vt, p, levels, edge, marrow_texture) -> dict[str, np.ndarray]:
    """Bones, cartilage, menisci, fluid and ligaments, painted in place (``ut``, ``vt``: tibial coordinates).

    Returns the lesion hosts ``marrow``, ``cartilage`` and ``meniscus``, each a soft occupancy of the image's
    shape, and the ``near_joint`` weight (1 within 25 mm of the joint line, 0 beyond 35 mm).
    """
    femur = _femur_sdf(u, v, y, p)
    tibia = _tibia_sdf(ut, vt, y, p)
    fibula = _fibula_sdf(ut, vt, y, p)
    patella = _patella_sdf(u, v, y, p)
    bones = np.minimum(np.minimum(femur, tibia), np.minimum(fibula, patella))
    fem_cart, tib_cart = p["femoral_cartilage"], p["tibial_cartilage"]

    # joint fluid: a thin film around the articular surfaces plus the suprapatellar pouch in anterior slices
    near_joint = smooth_step((30.0 - np.abs(v)) / 10.0)
    capsule = _inside(np.minimum(femur - fem_cart - 0.5, tibia - 0.8), edge) * near_joint
    pouch = _ellipse_sdf(u, v, 0.0, -62.0 * p["size"], 26.0 * p["size"] * _section(y, 26.0, 10.0),
                         (3.0 + 7.0 * p["effusion"]) * _section(y, 26.0, 10.0))
    _paint(image, np.maximum(capsule, _inside(pouch, edge)), levels["fluid"])

    # cortical bone everywhere, fatty marrow inside; the cortex thickens away from the joint
    _paint(image, _inside(bones, edge), levels["cortex"])
    cortex = 1.0 + 2.5 * smooth_step((np.abs(v) - 45.0) / 30.0)
    scar = np.exp(-(((v + 30.0 * p["size"] + 2.0 * np.sin(u / 9.0)) / 0.8) ** 2)) * (femur < 0) + np.exp(
        -(((vt - 20.0 * p["size"] - 1.5 * np.sin(ut / 7.0)) / 0.7) ** 2)) * (tibia < 0)  # physeal scars
    _paint(image, _inside(bones + cortex, edge), levels["marrow"] * marrow_texture * (1.0 - 0.6 * scar))

    # articular cartilage on the distal condyles (not in the notch) and on the plateau (not on the spines)
    notch_distance = np.abs(u - float(np.mean(p["condyle_u"]))) - p["notch_half_width"] - 2.0
    femoral = _inside(femur - fem_cart, edge) * (femur > -1.0) * smooth_step((v + 22.0) / 6.0) * smooth_step(
        notch_distance / 2.0)
    tibial = _inside(tibia - tib_cart, edge) * (tibia > -1.0) * (vt < tib_cart + 4.0) * smooth_step(
        (np.abs(ut) - 9.0) / 3.0) * smooth_step((p["plateau_half_width"] - 2.0 - np.abs(ut)) / 3.0)
    patellar = _inside(_patella_sdf(u, v, y, p, expand_y=2.0), edge) * (patella > -1.0)
    cartilage = np.maximum(np.maximum(femoral, tibial), patellar)
    _paint(image, cartilage, levels["cartilage"])

    # menisci sit on the plateau periphery and are pushed out of the way of the condyles
    menisci = np.minimum(_meniscus_sdf(ut, vt, y, p, -1.0), _meniscus_sdf(ut, vt, y, p, 1.0))
    meniscus = _inside(np.maximum(menisci, -(femur - fem_cart - 0.2)), edge)
    _paint(image, meniscus, levels["meniscus"])
    _ligaments(image, u, v, y, p, levels, edge, bones)
    return {"marrow": _inside(bones + cortex, edge), "cartilage": cartilage * (1.0 - meniscus),
            "meniscus": meniscus, "near_joint": near_joint}


def _ligaments(image, u, v, y, p, levels, edge, bones) -> None:
    """Medial and lateral collateral bands and the cruciates in the notch, painted in place outside ``bones``."""
    collateral = np.minimum(
        np.maximum(_band_sdf(u, -(p["plateau_half_width"] + 3.5), 1.2 * _section(y, 2.0, 14.0) - 0.1),
                   np.abs(v - 5.0) - 38.0),
        np.maximum(_band_sdf(u, p["plateau_half_width"] + 4.0 + 0.12 * v, 1.1 * _section(y, -10.0, 12.0) - 0.1),
                   np.abs(v - 0.0) - 26.0))
    notch_u = float(np.mean(p["condyle_u"]))
    pcl = _ellipse_sdf(u, v, notch_u - 3.0, -14.0, 4.0 * _section(y, -22.0, 9.0), 9.0 * _section(y, -22.0, 9.0))
    acl = _ellipse_sdf(0.9 * (u - notch_u - 3.0) + 0.45 * (v + 12.0), -0.45 * (u - notch_u - 3.0) + 0.9 * (v + 12.0),
                       0.0, 0.0, 3.5 * _section(y, -6.0, 10.0), 11.0 * _section(y, -6.0, 10.0))
    ligaments = _inside(np.minimum(collateral, np.minimum(pcl, acl)), edge) * (1.0 - _inside(bones, edge))
    _paint(image, ligaments, levels["ligament"])


def render_knee(rng: np.random.Generator, num_slices: int, grid_shape: tuple[int, int], pixel_mm: float,
                contrast: str) -> Phantom:
    """Render a coronal multi-slice knee on the full k-space image grid, with the tissues lesions may grow in.

    Args:
        rng: source of all randomness (anatomy, pose, slice positions, textures).
        num_slices: number of consecutive coronal slices (about 3 mm apart, anterior to posterior).
        grid_shape: (H, W) image grid, H along the oversampled readout (superior to inferior).
        pixel_mm: in-plane pixel size in mm (about 0.45 for the challenge's 640-row knee matrix). The whole leg
            is scaled so that its widest part spans 62-82 % of ``W * pixel_mm``.
        contrast: one of :data:`KNEE_CONTRASTS`.

    Returns:
        :class:`Phantom`: float32 ``(num_slices, H, W)`` magnitude with volume maximum 1 and background exactly
        0; hosts ``marrow``, ``cartilage``, ``meniscus`` and their sites (oedema is centred within ~30 mm of
        the joint line); slice positions in output mm.
    """
    if contrast not in _LEVELS:
        raise ValueError(f"Unknown knee contrast {contrast!r}; expected one of {KNEE_CONTRASTS}.")
    levels = _LEVELS[contrast]
    p = _knee_parameters(rng)
    height, width = grid_shape
    scale = rng.uniform(0.62, 0.82) * width * pixel_mm / (2.0 * p["leg_half_width"].max())
    mm_per_px = pixel_mm / scale  # phantom mm per output pixel
    edge = 1.2 * mm_per_px

    y = _slice_positions(rng, num_slices).astype(np.float32)[:, None, None]
    # pixel centres in phantom mm: random knee side (column flip), joint height, shift and small tilt
    side = rng.choice([-1.0, 1.0])
    across = (np.arange(width, dtype=np.float32) - (width - 1) / 2.0) * mm_per_px * side - rng.uniform(-6.0, 6.0)
    down = (np.arange(height, dtype=np.float32) - (height - 1) / 2.0) * mm_per_px - rng.uniform(-12.0, 12.0)
    tilt = np.deg2rad(rng.uniform(-3.0, 3.0))
    u = (np.cos(tilt) * across[None, :] - np.sin(tilt) * down[:, None])[None].astype(np.float32)
    v = (np.sin(tilt) * across[None, :] + np.cos(tilt) * down[:, None])[None].astype(np.float32)
    # the tibia hinges about the joint centre (varus / valgus)
    cos_t, sin_t = math.cos(p["tibia_angle"]), math.sin(p["tibia_angle"])
    ut, vt = cos_t * u - sin_t * v, sin_t * u + cos_t * v

    # only the columns the leg can reach are rendered
    leg_px = int(np.ceil(p["leg_half_width"].max() / mm_per_px + 8.0 / mm_per_px)) + 2
    columns = slice(max(width // 2 - leg_px, 0), min(width // 2 + leg_px, width))
    u, v, ut, vt = (array[..., columns] for array in (u, v, ut, vt))

    shape = (num_slices, height, columns.stop - columns.start)
    fibres = _anisotropic_noise(rng, shape, (6.0, 0.7))  # muscle fibres run along the leg (rows)
    speckle = _anisotropic_noise(rng, shape, (1.2, 1.2))  # trabecular and mild tissue texture
    region = np.zeros(shape, dtype=np.float32)
    _soft_tissue(region, u, v, y, p, levels, edge, fibres)
    hosts = _joint(region, u, v, y, ut, vt, p, levels, edge, 1.0 + 0.1 * speckle)
    region *= 1.0 + 0.03 * speckle
    image = np.zeros((num_slices, height, width), dtype=np.float32)
    image[..., columns] = np.clip(region, 0.0, None)
    for name, host in hosts.items():
        hosts[name] = np.zeros_like(image)
        hosts[name][..., columns] = host
    sites = {name: hosts[name] >= 0.5 for name in ("marrow", "cartilage", "meniscus")}
    sites["marrow"] &= hosts.pop("near_joint") >= 0.5  # subchondral oedema: centred within ~30 mm of the joint line
    peak = float(image.max())
    return Phantom((image / peak).astype(np.float32), hosts, sites, y.ravel().astype(np.float64) * scale, 1.0 / peak)


def render_knee_volume(rng: np.random.Generator, num_slices: int, grid_shape: tuple[int, int], pixel_mm: float,
                       contrast: str) -> np.ndarray:
    """The magnitude volume of :func:`render_knee`: float32 ``(num_slices, H, W)``, maximum 1."""
    return render_knee(rng, num_slices, grid_shape, pixel_mm, contrast).volume
