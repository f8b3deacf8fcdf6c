"""fastMRI+ boxes through the converter: the generator's CSVs, the mapping into image_label, a box you can see."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import fastmri_plus_csvs
from utils.data.annotations import (
    Box,
    bounding_box,
    challenge_to_fastmri_plus,
    clip_box,
    crop_boxes,
    fastmri_plus_to_challenge,
    read_annotations,
)
from utils.data.convert_fastmri.__main__ import main as convert_main
from utils.data.convert_fastmri.convert import ConversionReport, annotation_warnings
from utils.data.fastmri_plus import read_fastmri_plus
from utils.data.layout import parse_volume_name
from utils.data.synthetic import fastmri_format
from utils.data.synthetic.presets import get_preset
from utils.data.synthetic.simulate import render_object
from utils.errors import run_cli
from utils.mri.crop import center_crop_or_pad
from utils.mri.fft import fft2c


def test_the_generator_lists_its_lesions_as_fastmri_plus_csvs(fastmri_dir):
    names = {path.stem: path for path in fastmri_dir.glob("*.h5")}
    annotated = read_fastmri_plus(fastmri_plus_csvs(fastmri_dir))
    assert [path.name for path in fastmri_plus_csvs(fastmri_dir)] == ["brain.csv", "knee.csv"]
    assert {name.startswith("file_brain_") for name in annotated} == {True, False}  # both anatomies have lesions
    for name, file in annotated.items():
        assert file.csv.name == ("brain.csv" if name.startswith("file_brain_") else "knee.csv")
        with h5py.File(names[name], "r") as handle:
            num_slices = handle["kspace"].shape[0]
        for index, boxes in file.boxes.items():
            assert 0 <= index < num_slices
            assert all(clip_box(box, (320, 320)) == box and box.width and box.height for box in boxes)


def _lesion_truth(fastmri_dir: Path, source_name: str) -> dict[int, list[Box]]:
    """The generator's own boxes of a fastMRI-format volume, in the 384 space (its object rendered again)."""
    (job,) = [job for job in fastmri_format.plan_fastmri_jobs(fastmri_dir, get_preset("tiny"), 430) if job.path.name == source_name]
    rng, recipe, _ = fastmri_format._draw(430, get_preset("tiny"), job.anatomy, job.index)
    return crop_boxes(render_object(rng, recipe)[1], (recipe.height, recipe.width))


def test_converted_image_files_hold_the_fastmri_plus_boxes_in_the_384_space(converted, fastmri_dir):
    annotated = read_fastmri_plus(fastmri_plus_csvs(fastmri_dir))
    checked_truth = set()
    for image_path in sorted(converted.rglob("image/*.h5")):
        with h5py.File(image_path, "r") as handle:
            source = handle.attrs["source"]
        boxes = read_annotations(image_path)
        plus = annotated.get(Path(source).stem)
        expected = {} if plus is None else {i: [fastmri_plus_to_challenge(b) for b in bb] for i, bb in plus.boxes.items()}
        assert boxes == expected, image_path
        assert all(challenge_to_fastmri_plus(box) in plus.boxes[index] for index, bb in boxes.items() for box in bb)
        anatomy = parse_volume_name(image_path).anatomy
        if boxes and anatomy not in checked_truth:  # the lesions lie inside the 320 crop: nothing lost on the way
            assert boxes == _lesion_truth(fastmri_dir, source)
            checked_truth.add(anatomy)
    assert checked_truth == {"brain", "knee"}


def _bright_lesion_volume(path: Path) -> tuple[np.ndarray, float]:
    """A 2-slice 4-coil knee-sized fastMRI file: an ellipse of signal 1, and on slice 1 a 10 x 14 square of 3
    above the centre row (fastMRI+'s up-down flip moves it below). Returns (object (2, 640, 368), RSS gain)."""
    rows, columns = np.mgrid[:640, :368]
    body = (((rows - 330) / 150.0) ** 2 + ((columns - 180) / 120.0) ** 2 < 1).astype(np.float32)
    volume = np.stack([body, body])
    volume[1, 250:260, 200:214] = 3.0
    sens = np.array([1.0, 0.8j, -0.6, 0.5 - 0.5j], np.complex64)
    coil_images = volume[:, None] * sens[None, :, None, None]
    kspace = fft2c(torch.from_numpy(coil_images.astype(np.complex64))).numpy()
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace)
    return volume, float(np.sqrt((np.abs(sens) ** 2).sum()))


def test_a_bright_lesion_boxed_in_fastmri_plus_space_is_boxed_in_image_label(tmp_path, capsys):
    """A box you can see: the CSV row is found on fastMRI+'s view of the file (reconstruction_rss flipped
    up-down), the converter maps it, and the mapped box sits on the bright square of image_label."""
    source = tmp_path / "src"
    source.mkdir()
    volume, gain = _bright_lesion_volume(source / "file1000777.h5")
    view = center_crop_or_pad(volume[1] * gain, (320, 320))[::-1]  # what example.ipynb draws the boxes on
    row = bounding_box(view > 2 * gain, "Bone- Subchondral edema")
    assert row.y > 160  # the flip put it in the lower half
    csv = tmp_path / "knee.csv"
    csv.write_text("file,slice,study_level,x,y,width,height,label\n"
                   f"file1000777,1,No,{row.x},{row.y},{row.width},{row.height},{row.label}\n"
                   "file1000777,0,Yes,,,,,Normal for age\n")
    code, err = _run_convert(capsys, "--src", str(source), "--out", str(tmp_path / "Data"), "--split", "1", "0", "0",
                             "--annotations", str(csv), "--no-progress")
    assert code == 0 and "warning" not in err, err
    image_path = tmp_path / "Data/train/image/knee_acc4_1.h5"
    (box,) = read_annotations(image_path)[1]
    assert read_annotations(image_path).keys() == {1} and box.label == "Bone- Subchondral edema"
    with h5py.File(image_path, "r") as handle:
        label = handle["image_label"][1]
    inside = label[box.y : box.y + box.height, box.x : box.x + box.width]
    ring = label[box.y - 4 : box.y + box.height + 4, box.x - 4 : box.x + box.width + 4].sum() - inside.sum()
    ring_mean = ring / ((box.height + 8) * (box.width + 8) - inside.size)
    assert inside.mean() > 2.5 * ring_mean and inside.min() > 2 * ring_mean
    brightest = np.unravel_index(label.argmax(), label.shape)
    assert box.y <= brightest[0] < box.y + box.height and box.x <= brightest[1] < box.x + box.width
    assert box == bounding_box(label > 2 * gain, box.label)  # exactly the square


def _run_convert(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(convert_main, list(argv))
    return exit_info.value.code, capsys.readouterr().err


def test_annotated_files_that_are_not_converted_are_named_once_each(fastmri_dir, tmp_path, capsys):
    code, err = _run_convert(capsys, "--src", str(fastmri_dir), "--out", str(tmp_path / "Data"), "--limit", "3",
                             "--split", "1", "0", "0", "--annotations", *map(str, fastmri_plus_csvs(fastmri_dir)), "--no-progress")
    assert code == 0, err
    converted = {path.stem for path in sorted(fastmri_dir.glob("*.h5"))[:3]}
    left_out = sorted(set(read_fastmri_plus(fastmri_plus_csvs(fastmri_dir))) - converted)
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert left_out and len(warnings) == len(left_out)
    for name in left_out:
        assert sum(f"boxes of {name} not used" in line for line in warnings) == 1
    many = ConversionReport([], [], {f"file{1000000 + i}": Path("knee.csv") for i in range(25)})
    assert len(annotation_warnings(many)) == 21 and "5 more annotated files" in annotation_warnings(many)[-1]


def test_boxes_beyond_a_volume_or_a_bad_csv_stop_the_run_before_anything_is_written(fastmri_dir, tmp_path, capsys):
    first = sorted(fastmri_dir.glob("*.h5"))[0]
    csv = tmp_path / "knee.csv"
    csv.write_text(f"file,slice,study_level,x,y,width,height,label\n{first.stem},40,No,1,2,8,8,x\n")
    code, err = _run_convert(capsys, "--src", str(first), "--out", str(tmp_path / "Data"), "--annotations", str(csv))
    assert code == 2 and err.startswith(f"error: {csv}: boxes on slice 40 of {first.stem}") and err.count("\n") == 1
    csv.write_text("file,slice,x,y\n")
    code, err = _run_convert(capsys, "--src", str(first), "--out", str(tmp_path / "Data"), "--annotations", str(csv))
    assert code == 2 and "is not a fastMRI+ annotation CSV" in err and err.count("\n") == 1
    assert not (tmp_path / "Data").exists()
