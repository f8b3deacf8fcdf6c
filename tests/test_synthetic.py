"""The synthetic generator writes the challenge layout, keys, dtypes and physics it claims."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from utils.data.annotations import box_mask, clip_box, read_annotations, scored_boxes
from utils.data.challenge_writer import rss_crop
from utils.data.layout import parse_volume_name
from utils.mri.acs import acs_bounds
from utils.data.synthetic.generate import MANIFEST_NAME, generate, plan_jobs
from utils.data.synthetic.lesions import LESION_KINDS
from utils.data.synthetic.presets import get_preset
from utils.data.synthetic.simulate import simulate_volume
from utils.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]


def _numpy_label(kspace: np.ndarray) -> np.ndarray:
    """RSS of the centred orthonormal IFFT, centre-cropped/padded to 384x384, written with numpy alone."""
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace.astype(np.complex128), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    rss = np.sqrt((np.abs(images) ** 2).sum(axis=-3))
    height, width = rss.shape[-2:]
    out = np.zeros((*rss.shape[:-2], 384, 384))
    top, left = height // 2 - 192, width // 2 - 192
    rows = slice(max(top, 0), max(top, 0) + min(384, height))
    cols = slice(max(left, 0), max(left, 0) + min(384, width))
    out[..., max(-top, 0) : max(-top, 0) + min(384, height), max(-left, 0) : max(-left, 0) + min(384, width)] = rss[..., rows, cols]
    return out


def test_layout_matches_the_challenge(tiny_data):
    preset = get_preset("tiny")
    names = sorted(str(p.relative_to(tiny_data)) for p in tiny_data.rglob("*.h5"))
    assert len(names) == 2 * len(plan_jobs(tiny_data, preset))
    assert "train/kspace/brain_acc4_1.h5" in names and "val/image/knee_acc8_2.h5" in names
    assert "leaderboard/acc8/kspace/knee_test1.h5" in names and "leaderboard/acc4/image/brain_test1.h5" in names
    assert not list(tiny_data.rglob("*.tmp"))
    assert (tiny_data / MANIFEST_NAME).is_file()


def test_files_have_keys_dtypes_shapes_and_attrs(tiny_data):
    widths = set()
    for kspace_path in tiny_data.rglob("kspace/*.h5"):
        image_path = kspace_path.parent.parent / "image" / kspace_path.name
        name = parse_volume_name(kspace_path)
        with h5py.File(kspace_path, "r") as k, h5py.File(image_path, "r") as i:
            kspace, mask = k["kspace"], k["mask"]
            assert kspace.dtype == np.complex64 and kspace.ndim == 4
            slices, coils, height, width = kspace.shape
            widths.add(width)
            assert height == {"brain": 768, "knee": 640}[name.anatomy]
            assert 320 <= width <= 480 and coils == 4
            assert mask.dtype == np.float32 and mask.shape == (width,)
            for key in ("image_label", "image_input", "image_grappa"):
                assert i[key].dtype == np.float32 and i[key].shape == (slices, 384, 384)
            label = i["image_label"][()]
            assert i.attrs["max"] == pytest.approx(label.max(), rel=1e-6)
            assert i.attrs["norm"] == pytest.approx(np.linalg.norm(label), rel=1e-5)
            expected_max = {"brain": (2.5e-4, 8e-4), "knee": (0.5e-4, 2e-4)}[name.anatomy]
            assert expected_max[0] < i.attrs["max"] < expected_max[1]
    assert min(widths) < 384 < max(widths), "the tiny preset should include a width narrower than 384"


def test_label_is_rss_of_stored_kspace_and_input_of_masked_kspace(tiny_data):
    for split_file in ("train/kspace/brain_acc4_1.h5", "val/kspace/knee_acc4_2.h5", "val/kspace/knee_acc8_2.h5"):
        kspace_path = tiny_data / split_file
        with h5py.File(kspace_path, "r") as k, h5py.File(str(kspace_path).replace("kspace", "image"), "r") as i:
            kspace, mask = k["kspace"][()], k["mask"][()]
            label, zero_filled, grappa = i["image_label"][()], i["image_input"][()], i["image_grappa"][()]
        scale = label.max()
        np.testing.assert_allclose(label, _numpy_label(kspace), atol=1e-5 * scale)
        np.testing.assert_allclose(zero_filled, _numpy_label(kspace * mask), atol=1e-5 * scale)
        assert np.isfinite(grappa).all() and not np.array_equal(grappa, zero_filled)
        if "brain_acc4" in split_file:  # 4 head coils undo R = 4; the tiny preset's 4 knee coils (one ring) cannot
            assert np.linalg.norm(grappa - label) < np.linalg.norm(zero_filled - label)


def test_masks_are_challenge_masks(tiny_data):
    for kspace_path in tiny_data.rglob("kspace/*.h5"):
        acceleration = parse_volume_name(kspace_path).acceleration
        with h5py.File(kspace_path, "r") as k:
            mask = k["mask"][()]
            kspace = k["kspace"][0]
        start, stop = acs_bounds(mask)
        assert 26 <= stop - start <= 39 + acceleration
        outside = np.flatnonzero(mask)
        outside = outside[(outside < start) | (outside >= stop)]
        assert len(set(outside % acceleration)) == 1
        assert acceleration / 2 < mask.size / mask.sum() < acceleration
        unsampled_energy = np.abs(kspace[..., mask == 0]).sum()
        if "leaderboard" in kspace_path.parts:
            assert unsampled_energy == 0  # stored already under-sampled
        else:
            assert unsampled_energy > 0  # stored fully sampled


def test_foreground_is_the_object_not_the_noise(tiny_data):
    from utils.metrics.foreground import foreground_mask

    for image_path in tiny_data.glob("train/image/*.h5"):
        anatomy = parse_volume_name(image_path).anatomy
        with h5py.File(image_path, "r") as i:
            label = i["image_label"][()]
        fraction = foreground_mask(label, anatomy).mean()
        assert 0.15 < fraction < 0.95, (image_path.name, fraction)


def test_generation_is_deterministic_for_a_seed(tmp_path):
    def leaderboard(folder, seed):
        generate(folder, "tiny", seed=seed, progress=False, splits=("leaderboard",))
        kspace = {p.name: h5py.File(p, "r")["kspace"][()] for p in sorted(folder.glob("leaderboard/acc4/kspace/*.h5"))}
        images = {p.name: dict(h5py.File(p, "r").attrs) for p in sorted(folder.glob("leaderboard/*/image/*.h5"))}
        return kspace, images

    (first, first_attrs), (again, again_attrs), (other, _) = (
        leaderboard(tmp_path / name, seed) for name, seed in (("a", 7), ("b", 7), ("c", 8))
    )
    assert first.keys() == again.keys() == other.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert first[name].shape != other[name].shape or not np.array_equal(first[name], other[name])
    assert first_attrs == again_attrs  # the lesion boxes too


def test_existing_data_of_another_seed_is_not_overwritten(tiny_copy):
    before = (tiny_copy / "train/kspace/brain_acc4_1.h5").stat().st_mtime_ns
    with pytest.raises(UserInputError, match="--overwrite"):
        generate(tiny_copy, "tiny", seed=1, progress=False)
    assert generate(tiny_copy, "tiny", seed=430, progress=False) == []  # complete: nothing to do
    assert (tiny_copy / "train/kspace/brain_acc4_1.h5").stat().st_mtime_ns == before


def test_a_folder_of_foreign_h5_files_is_refused_even_with_overwrite(tmp_path):
    real = tmp_path / "Data/train/kspace/brain_acc4_1.h5"  # stands for the real challenge data: same names
    real.parent.mkdir(parents=True)
    real.write_bytes(b"real data")
    for overwrite in (False, True):
        with pytest.raises(UserInputError, match="did not write"):
            generate(tmp_path / "Data", "tiny", overwrite=overwrite, progress=False)
    assert real.read_bytes() == b"real data"


def test_cli_estimates_and_rejects_unknown_presets():
    estimate = subprocess.run(
        [sys.executable, "-m", "utils.data.synthetic", "--preset", "full", "--estimate"], cwd=REPO, capture_output=True, text=True
    )
    assert estimate.returncode == 0 and "preset full:" in estimate.stdout and "GB" in estimate.stdout
    bad = subprocess.run([sys.executable, "-m", "utils.data.synthetic", "--preset", "huge"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_two_worker_processes_write_the_same_dataset(tiny_data, tmp_path):
    parallel = tmp_path / "Data"
    generate(parallel, "tiny", seed=430, workers=2, progress=False)
    for path in tiny_data.rglob("*.h5"):
        with h5py.File(path, "r") as a, h5py.File(parallel / path.relative_to(tiny_data), "r") as b:
            assert sorted(a.keys()) == sorted(b.keys()) and dict(a.attrs) == dict(b.attrs)
            for key in a.keys():
                np.testing.assert_array_equal(a[key][()], b[key][()])


def test_overwrite_with_a_smaller_preset_leaves_no_stale_volumes(tmp_path):
    from utils.data.synthetic.presets import PRESETS, Preset

    bigger = Preset("bigger", 2, 1, 1, PRESETS["tiny"].brain, PRESETS["tiny"].knee)
    PRESETS["bigger"] = bigger
    try:
        generate(tmp_path, "bigger", seed=1, progress=False, splits=("train",))
        assert (tmp_path / "train/kspace/brain_acc4_2.h5").is_file()
        generate(tmp_path, "tiny", seed=1, overwrite=True, progress=False, splits=("train",))
    finally:
        del PRESETS["bigger"]
    assert sorted(p.name for p in tmp_path.glob("train/kspace/*.h5")) == ["brain_acc4_1.h5", "brain_acc8_1.h5", "knee_acc4_1.h5", "knee_acc8_1.h5"]


# ------------------------------------------------------------------------------------------------ lesions and boxes


def test_every_split_and_anatomy_gets_boxes_inside_the_image_and_the_foreground(tiny_data):
    from utils.metrics.foreground import foreground_mask

    boxed = set()
    for image_path in sorted(tiny_data.rglob("image/*.h5")):
        anatomy = parse_volume_name(image_path).anatomy
        boxes = read_annotations(image_path)  # checks the format, slice indices included
        with h5py.File(image_path, "r") as i:
            foreground = foreground_mask(i["image_label"][()], anatomy) > 0
        for index, slice_boxes in boxes.items():
            for box in slice_boxes:
                assert clip_box(box) == box and box.width > 0 and box.height > 0, (image_path.name, box)
                assert box.label in {kind.label for kind in LESION_KINDS[anatomy]}
                assert foreground[index, box.y : box.y + box.height, box.x : box.x + box.width].all(), (image_path.name, box)
        if boxes:
            boxed.add((image_path.relative_to(tiny_data).parts[0], anatomy))
    assert boxed == {(split, anatomy) for split in ("train", "val", "leaderboard") for anatomy in ("brain", "knee")}


@pytest.mark.parametrize(
    "name", ["train/image/brain_acc8_1.h5", "val/image/knee_acc8_2.h5", "leaderboard/acc4/image/knee_test1.h5"]
)
def test_lesions_are_in_the_kspace_and_show_in_the_images_inside_their_boxes(tiny_data, name):
    """The same volume simulated without lesions differs from the stored one only around the boxes, and
    clearly inside every box the scorer uses: the lesions went into the object, before coils and noise."""
    preset = get_preset("tiny")
    (job,) = [job for job in plan_jobs(tiny_data, preset) if job.image_path == tiny_data / name]
    rng, recipe = job.recipe(430, preset)
    _, slices = simulate_volume(rng, recipe, lesions=False)
    with h5py.File(job.image_path, "r") as i, h5py.File(job.kspace_path, "r") as k:
        label, zero_filled, peak, mask = i["image_label"][()], i["image_input"][()], i.attrs["max"], k["mask"][()]
    plain = [(rss_crop(kspace), rss_crop(kspace * mask)) for kspace in slices]
    boxes = read_annotations(job.image_path)
    assert any(scored_boxes(slice_boxes) for slice_boxes in boxes.values())
    for index, (plain_label, plain_input) in enumerate(plain):
        change, input_change = np.abs(label[index] - plain_label) / peak, np.abs(zero_filled[index] - plain_input) / peak
        near = ndimage.binary_dilation(box_mask(boxes.get(index, [])), iterations=3)
        assert change[~near].max() < 1e-3  # nothing changed away from the boxes
        for box in scored_boxes(boxes.get(index, [])):
            inside = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
            assert change[inside].mean() > 0.03 and input_change[inside].mean() > 0.01, (index, box)
            # the box against a 4-pixel ring around it: the lesion changes that contrast
            contrast = _box_contrast(label[index], box) - _box_contrast(plain_label, box)
            assert abs(contrast) / peak > 0.02, (index, box)


def _box_contrast(image: np.ndarray, box, ring: int = 4) -> float:
    """Mean of ``image`` inside ``box`` minus its mean in a ``ring``-pixel band around the box."""
    outer = image[box.y - ring : box.y + box.height + ring, box.x - ring : box.x + box.width + ring]
    inner = image[box.y : box.y + box.height, box.x : box.x + box.width]
    return float(inner.mean() - (outer.sum() - inner.sum()) / (outer.size - inner.size))


@pytest.mark.parametrize("anatomy", ["brain", "knee"])
def test_lesion_sites_lie_inside_their_tissue_and_the_anatomy(anatomy):
    from utils.data.synthetic.brain import render_brain
    from utils.data.synthetic.knee import render_knee

    render, grid, contrast = {"brain": (render_brain, (768, 396), "FLAIR"), "knee": (render_knee, (640, 368), "PDFS")}[anatomy]
    phantom = render(np.random.default_rng(3), 2, grid, 0.5, contrast)
    assert set(phantom.hosts) == set(phantom.sites) == {kind.host for kind in LESION_KINDS[anatomy]}
    for name, host in phantom.hosts.items():
        sites = phantom.sites[name]
        assert host.shape == sites.shape == phantom.volume.shape and host.dtype == np.float32 and sites.dtype == bool
        assert 0.0 <= host.min() and host.max() <= 1.0
        assert np.all(host[sites] >= 0.5) and np.all(phantom.volume[sites] > 0.0)
    assert any(sites.any() for sites in phantom.sites.values())
    assert phantom.slice_mm.shape == (2,) and 0 < phantom.level_scale
