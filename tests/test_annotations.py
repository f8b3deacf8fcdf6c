"""Lesion boxes: the ``annotations`` attribute, its checks, the scorer's clipping rules, fastMRI+ space and CSVs."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from utils.data.annotations import (
    Box,
    annotations_attr,
    bounding_box,
    box_mask,
    challenge_to_fastmri_plus,
    clip_box,
    crop_box,
    fastmri_plus_to_challenge,
    parse_annotations,
    read_annotations,
    scored_boxes,
)
from utils.data.fastmri_plus import read_fastmri_plus, write_fastmri_plus
from utils.errors import UserInputError
from utils.mri.crop import center_crop_or_pad

BOXES = {
    3: [Box(10, 20, 30, 40, "Meniscus Tear"), Box(0, 0, 7, 7)],
    0: [Box(383, 383, 5, 5, "edge")],
}


def _image_file(path: Path, annotations=None, num_slices: int = 4) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("image_label", data=np.zeros((num_slices, 384, 384), np.float32))
        if annotations is not None:
            handle.attrs["annotations"] = annotations
    return path


# ------------------------------------------------------------------------------------------------ the attribute


def test_round_trip_through_an_image_file(tmp_path):
    path = _image_file(tmp_path / "brain_acc4_1.h5", annotations_attr(BOXES))
    assert read_annotations(path) == {0: BOXES[0], 3: BOXES[3]}
    with h5py.File(path, "r") as handle:  # an open file works too
        assert read_annotations(handle) == read_annotations(path)
    assert list(read_annotations(path)) == [0, 3]


def test_the_json_is_deterministic_compact_and_leaves_out_empty_slices_and_absent_labels():
    text = annotations_attr({3: BOXES[3], 1: [], 0: BOXES[0]})
    assert text == annotations_attr(dict(reversed(list({0: BOXES[0], 1: [], 3: BOXES[3]}.items()))))
    assert json.loads(text) == {
        "0": [{"x": 383, "y": 383, "width": 5, "height": 5, "label": "edge"}],
        "3": [{"x": 10, "y": 20, "width": 30, "height": 40, "label": "Meniscus Tear"}, {"x": 0, "y": 0, "width": 7, "height": 7}],
    }
    assert " " not in text.replace("Meniscus Tear", "")
    assert annotations_attr({}) == "{}" and annotations_attr({2: []}) == "{}"


def test_a_file_without_the_attribute_has_no_boxes_and_bytes_attributes_are_read(tmp_path):
    assert read_annotations(_image_file(tmp_path / "none.h5")) == {}
    path = _image_file(tmp_path / "bytes.h5", np.bytes_(annotations_attr(BOXES).encode()))
    assert read_annotations(path) == {0: BOXES[0], 3: BOXES[3]}
    assert parse_annotations('{"1": [{"x": 1, "y": 2, "width": 3, "height": 4, "score": 0.9}], "2": []}', "f.h5") == {
        1: [Box(1, 2, 3, 4)]  # other keys of a box are ignored; an empty slice is no slice
    }


BAD_ATTRIBUTES = {
    "not JSON": ('{"0": [', "is not valid JSON"),
    "a list": ("[]", "must be a JSON object of slice index -> list of boxes, got a list"),
    "not a string": (np.float64(3.0), "must be a JSON string"),
    "key not a number": ('{"a": []}', "key 'a' is not a slice index"),
    "negative slice": ('{"-1": []}', "key '-1' is not a slice index"),
    "slice out of range": ('{"4": [{"x": 0, "y": 0, "width": 8, "height": 8}]}', "slice 4 is out of range (the file has 4 slices)"),
    "key twice": ('{"0": [], "0": []}', "gives the key '0' twice"),
    "slice twice": ('{"1": [], "01": []}', "gives slice 1 twice"),
    "slice not a list": ('{"0": {"x": 0}}', "slice 0 must hold a list of boxes, got an object"),
    "box not an object": ('{"0": [[0, 0, 8, 8]]}', "box 0 of slice 0 must be an object with x, y, width and height, got a list"),
    "missing size": ('{"0": [{"x": 0, "y": 0}]}', "box 0 of slice 0 lacks 'width', 'height'"),
    "float": ('{"0": [{"x": 0.5, "y": 0, "width": 8, "height": 8}]}', "has x = 0.5; x, y, width and height must be integers"),
    "bool": ('{"0": [{"x": 0, "y": 0, "width": true, "height": 8}]}', "has width = true"),
    "string": ('{"2": [{"x": 0, "y": 0, "width": 8, "height": 8}, {"x": "3", "y": 0, "width": 8, "height": 8}]}',
               'box 1 of slice 2 has x = "3"'),
    "negative size": ('{"0": [{"x": 0, "y": 0, "width": -8, "height": 8}]}', "has a negative size (width -8, height 8)"),
    "label not text": ('{"0": [{"x": 0, "y": 0, "width": 8, "height": 8, "label": 7}]}', "has label = 7; a label must be a string"),
}


@pytest.mark.parametrize("value,problem", BAD_ATTRIBUTES.values(), ids=BAD_ATTRIBUTES.keys())
def test_every_bad_attribute_is_one_line_naming_the_file(value, problem, tmp_path):
    path = _image_file(tmp_path / "knee_acc8_3.h5", value)
    with pytest.raises(UserInputError) as error:
        read_annotations(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: attribute 'annotations'"), message
    assert problem in message, message


# ------------------------------------------------------------------------------------------------ geometry


def test_clipping_keeps_the_part_inside_the_image():
    assert clip_box(Box(10, 20, 30, 40, "a")) == Box(10, 20, 30, 40, "a")
    assert clip_box(Box(-5, 380, 20, 10)) == Box(0, 380, 15, 4)
    assert clip_box(Box(400, 10, 5, 5)) == Box(384, 10, 0, 5)  # outside: nothing left
    assert clip_box(Box(-20, -20, 10, 10)) == Box(0, 0, 0, 0)
    assert clip_box(Box(300, 300, 50, 50), (320, 320)) == Box(300, 300, 20, 20)


def test_the_scorer_skips_boxes_smaller_than_the_ssim_window_after_clipping():
    boxes = [Box(0, 0, 7, 7), Box(0, 0, 6, 30), Box(0, 0, 30, 6), Box(380, 0, 10, 10), Box(-3, -3, 10, 10), Box(5, 5, 0, 0)]
    assert scored_boxes(boxes) == [Box(0, 0, 7, 7), Box(0, 0, 7, 7)]  # the last kept one is (-3, -3, 10, 10) clipped
    assert scored_boxes([Box(370, 370, 20, 20)]) == [Box(370, 370, 14, 14)]


def test_box_mask_is_the_union_of_the_clipped_boxes():
    mask = box_mask([Box(1, 2, 3, 4), Box(2, 3, 3, 3), Box(-5, -5, 6, 6), Box(383, 383, 9, 9)])
    expected = np.zeros((384, 384), bool)
    expected[2:6, 1:4] = expected[3:6, 2:5] = expected[0:1, 0:1] = expected[383, 383] = True
    assert mask.dtype == bool and mask.shape == (384, 384)
    np.testing.assert_array_equal(mask, expected)
    assert box_mask([], (5, 6)).shape == (5, 6)


def test_bounding_box_is_tight():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3] = mask[4, 7] = True
    assert bounding_box(mask, "x") == Box(3, 2, 5, 3, "x")
    assert bounding_box(np.zeros((4, 4), bool)) is None


@pytest.mark.parametrize("grid", [(768, 396), (640, 368), (640, 320), (640, 373), (768, 480)])
def test_crop_box_puts_a_box_where_center_crop_or_pad_puts_its_pixels(grid):
    box = Box(grid[1] // 2 - 60, grid[0] // 2 + 25, 17, 11)
    image = np.zeros(grid, np.float32)
    image[box.y : box.y + box.height, box.x : box.x + box.width] = 1.0
    expected = bounding_box(center_crop_or_pad(image, (384, 384)) > 0)
    assert crop_box(box, grid) == expected
    assert crop_box(Box(0, 0, 5, 5), (768, 396)) == Box(0, 0, 0, 0)  # in the readout oversampling: cropped away


@pytest.mark.parametrize("grid", [(640, 368), (768, 396), (640, 320), (640, 373)])
def test_fastmri_plus_box_of_a_bright_square_maps_onto_the_square_in_image_label(grid):
    """A bright square in a full-size image: found in fastMRI+'s view (320 crop flipped up-down), mapped to 384."""
    image = np.zeros(grid, np.float32)
    top, left = grid[0] // 2 - 90, grid[1] // 2 + 40  # above the centre: the flip moves it below
    image[top : top + 12, left : left + 9] = 1.0
    reconstruction_rss = center_crop_or_pad(image, (320, 320))
    fastmri_plus_view = reconstruction_rss[::-1, :]  # what example.ipynb draws on
    plus_box = bounding_box(fastmri_plus_view > 0, "Bone- Subchondral edema")
    assert plus_box.y > 160  # the square is in the lower half of the flipped view
    label = center_crop_or_pad(image, (384, 384))
    mapped = fastmri_plus_to_challenge(plus_box)
    assert mapped == bounding_box(label > 0, "Bone- Subchondral edema")
    assert label[mapped.y : mapped.y + mapped.height, mapped.x : mapped.x + mapped.width].all()
    assert challenge_to_fastmri_plus(mapped) == plus_box


def test_fastmri_plus_mapping_of_known_coordinates():
    # rows y:y+h of the flipped 320 image are rows 320-y-h:320-y of reconstruction_rss, then +32 in both axes
    assert fastmri_plus_to_challenge(Box(90, 173, 35, 10, "t")) == Box(122, 169, 35, 10, "t")
    assert fastmri_plus_to_challenge(Box(0, 0, 320, 320)) == Box(32, 32, 320, 320)
    assert challenge_to_fastmri_plus(Box(0, 0, 40, 40)) == Box(0, 312, 8, 8)  # clipped to the 320 crop first
    assert challenge_to_fastmri_plus(Box(0, 0, 20, 20)).width == 0


# ------------------------------------------------------------------------------------------------ fastMRI+ CSVs


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_fastmri_plus_csv_rows_become_boxes_and_study_level_rows_are_skipped(tmp_path):
    knee = _csv(tmp_path / "knee.csv", "file,slice,study_level,x,y,width,height,label\n"
                "file1000001,14,No,90,173,35,10,Cartilage - Partial Thickness loss/defect\n"
                "file1000001,15,No,117,162,20,12,Bone- Subchondral edema\n"
                "file1000001,15,No,93,173,39,10,Joint Effusion \n"
                "file1000002,0,Yes,,,,,Normal for age\n")
    brain = _csv(tmp_path / "brain.csv", "file,slice,study_level,x,y,width,height,label\n"
                 "file_brain_AXFLAIR_200_6002425,2,No,91,132,7,6,Nonspecific white matter lesion\n")
    annotated = read_fastmri_plus([knee, brain])
    assert sorted(annotated) == ["file1000001", "file_brain_AXFLAIR_200_6002425"]
    assert annotated["file1000001"].csv == knee
    assert annotated["file1000001"].boxes == {
        14: [Box(90, 173, 35, 10, "Cartilage - Partial Thickness loss/defect")],
        15: [Box(117, 162, 20, 12, "Bone- Subchondral edema"), Box(93, 173, 39, 10, "Joint Effusion")],
    }
    written = tmp_path / "again.csv"
    write_fastmri_plus(written, {name: file.boxes for name, file in annotated.items()})
    assert {name: file.boxes for name, file in read_fastmri_plus([written]).items()} == {
        name: file.boxes for name, file in annotated.items()
    }


HEADER = "file,slice,study_level,x,y,width,height,label\n"
BAD_CSVS = {
    "not a CSV of fastMRI+": ("file,slice,x,y\nfile1,0,1,2\n", "its header lacks study_level, width, height, label"),
    "not an integer": (HEADER + "file1000001,0,No,9a,1,5,5,x\n", "line 2: x = '9a' is not an integer"),
    "negative size": (HEADER + "file1000001,0,No,1,1,-5,5,x\n", "line 2: slice, width and height must not be negative"),
    "partial coordinates": (HEADER + "file1000001,0,No,1,,5,5,x\n", "line 2: y is empty"),
    "missing fields": (HEADER + "file1000001,0,No,1,1,5\n", "line 2 has 6 fields; the header has 8"),
}


@pytest.mark.parametrize("text,problem", BAD_CSVS.values(), ids=BAD_CSVS.keys())
def test_a_bad_fastmri_plus_csv_is_one_line_naming_it(text, problem, tmp_path):
    path = _csv(tmp_path / "knee.csv", text)
    with pytest.raises(UserInputError) as error:
        read_fastmri_plus([path])
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value) and "\n" not in str(error.value)


def test_a_file_annotated_twice_or_a_missing_csv_is_refused(tmp_path):
    path = _csv(tmp_path / "knee.csv", HEADER + "file1000001,0,No,1,1,5,5,x\n")
    with pytest.raises(UserInputError, match="annotates file1000001, which .*knee.csv annotates too"):
        read_fastmri_plus([path, path])
    with pytest.raises(UserInputError, match="missing.csv: file not found"):
        read_fastmri_plus([tmp_path / "missing.csv"])
