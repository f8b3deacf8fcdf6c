"""Lesion boxes: the ``annotations`` attribute of an image file, which the 2026 edition's SSIM_bbox scores.

Conventions (the organisers'; stated here once):

- A :class:`Box` lives in the 384 x 384 space of ``image_label`` (``CHALLENGE_SHAPE``): ``x`` is the column of
  its left edge and ``y`` the row of its top edge, both counted from the top-left corner, and it covers
  ``image[y:y + height, x:x + width]`` (numpy indexing, ends exclusive).
- An image file stores its boxes as ``attrs['annotations']``, a JSON string
  ``{"<slice index>": [{"x": int, "y": int, "width": int, "height": int, "label": str}, ...], ...}``;
  ``label`` is optional (other keys of a box are ignored), slices without boxes are absent, and a file
  without the attribute has no boxes.
- The scorer clips a box to the image and skips one whose clipped width or height is below the 7-pixel SSIM
  window: :func:`scored_boxes`.
- A box of pixels of a full-size (H, W) image grid lands in the 384 space where
  :func:`utils.mri.crop.center_crop_or_pad` puts those pixels when it makes ``image_label``: :func:`crop_box`.
- fastMRI+ (github.com/microsoft/fastmri-plus, ``Annotations/{knee,brain}.csv``) gives boxes in the 320 x 320
  space of fastMRI's ``reconstruction_rss`` flipped up-down: its ``ExampleScripts/example.ipynb`` draws the
  boxes with PIL (x along columns, y along rows) on ``reconstruction_rss[:, ::-1, :]``, and its README says
  the pixel arrays were flipped up/down for labelling. ``reconstruction_rss`` is the RSS image of
  ``image_label`` centre-cropped to 320 instead of 384, centre on centre, so a fastMRI+ box moves to the 384
  space by undoing the flip and shifting by 384 // 2 - 320 // 2 = 32 pixels: :func:`fastmri_plus_to_challenge`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from utils.data.h5 import open_h5
from utils.errors import file_error
from utils.mri.crop import CHALLENGE_SHAPE, center_shift

__all__ = [
    "ANNOTATIONS_ATTR",
    "SSIM_WINDOW",
    "FASTMRI_PLUS_SHAPE",
    "Box",
    "read_annotations",
    "parse_annotations",
    "annotations_attr",
    "clip_box",
    "scored_boxes",
    "box_mask",
    "bounding_box",
    "crop_box",
    "crop_boxes",
    "fastmri_plus_to_challenge",
    "challenge_to_fastmri_plus",
]

ANNOTATIONS_ATTR = "annotations"
SSIM_WINDOW = 7  # the scorer skips boxes narrower or lower than its SSIM window
FASTMRI_PLUS_SHAPE = (320, 320)  # fastMRI's reconstruction_rss, in which fastMRI+ draws its boxes
_FIELDS = ("x", "y", "width", "height")


@dataclass(frozen=True)
class Box:
    """One box: rows ``y:y + height`` and columns ``x:x + width`` of a slice, with an optional label."""

    x: int
    y: int
    width: int
    height: int
    label: str | None = None

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"x": int(self.x), "y": int(self.y), "width": int(self.width), "height": int(self.height)}
        if self.label is not None:
            record["label"] = self.label
        return record


# ------------------------------------------------------------------------------------------------ reading


def read_annotations(source: str | os.PathLike | h5py.File) -> dict[int, list[Box]]:
    """The boxes of an image file (a path or an open h5py file) by slice index; ``{}`` without the attribute.

    Slice indices are checked against the slices of ``image_label`` when the file has it. An attribute that
    breaks the format raises UserInputError: one line naming the file and what is wrong.
    """
    if isinstance(source, h5py.File):
        return _read_open(source)
    with open_h5(source) as handle:
        return _read_open(handle)


def _read_open(handle: h5py.File) -> dict[int, list[Box]]:
    if ANNOTATIONS_ATTR not in handle.attrs:
        return {}
    label = handle.get("image_label")
    num_slices = label.shape[0] if isinstance(label, h5py.Dataset) and label.ndim >= 1 else None
    return parse_annotations(handle.attrs[ANNOTATIONS_ATTR], handle.filename, num_slices)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a key given twice is an error (json would keep the last one silently)."""
    record = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _decode(value: Any, path: str | os.PathLike) -> Any:
    """The JSON text of the attribute: h5py gives ``str``, or ``bytes`` for fixed-length strings."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise file_error(path, f"attribute '{ANNOTATIONS_ATTR}' is not UTF-8 text") from None
    if not isinstance(value, str):
        raise file_error(path, f"attribute '{ANNOTATIONS_ATTR}' must be a JSON string, got {type(value).__name__} {value!r:.60}")
    return value


def parse_annotations(value: Any, path: str | os.PathLike, num_slices: int | None = None) -> dict[int, list[Box]]:
    """Parse and check the ``annotations`` attribute ``value`` of the file ``path`` (named in errors).

    Returns the boxes by slice index, slices in increasing order; slices with an empty list are dropped.
    ``num_slices``: the file's slice count, when known, to refuse slice indices beyond it.
    """
    where = f"attribute '{ANNOTATIONS_ATTR}'"
    text = _decode(value, path)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise file_error(path, f"{where} gives the key '{err}' twice in one object") from None
    except json.JSONDecodeError as err:
        raise file_error(path, f"{where} is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(data, dict):
        raise file_error(path, f"{where} must be a JSON object of slice index -> list of boxes, got {_json_type(data)}")
    boxes: dict[int, list[Box]] = {}
    seen: set[int] = set()
    for key, records in data.items():
        index = _slice_index(key, path, num_slices)
        if index in seen:
            raise file_error(path, f"{where} gives slice {index} twice")
        seen.add(index)
        if not isinstance(records, list):
            raise file_error(path, f"{where}: slice {key} must hold a list of boxes, got {_json_type(records)}")
        parsed = [_parse_box(record, f"box {number} of slice {key}", path) for number, record in enumerate(records)]
        if parsed:
            boxes[index] = parsed
    return dict(sorted(boxes.items()))


def _slice_index(key: str, path: str | os.PathLike, num_slices: int | None) -> int:
    if not re.fullmatch(r"[0-9]+", key):
        raise file_error(path, f"attribute '{ANNOTATIONS_ATTR}': key {key!r} is not a slice index (a non-negative integer)")
    index = int(key)
    if num_slices is not None and index >= num_slices:
        raise file_error(path, f"attribute '{ANNOTATIONS_ATTR}': slice {index} is out of range (the file has {num_slices} slices)")
    return index


def _parse_box(record: Any, what: str, path: str | os.PathLike) -> Box:
    where = f"attribute '{ANNOTATIONS_ATTR}'"
    if not isinstance(record, dict):
        raise file_error(path, f"{where}: {what} must be an object with x, y, width and height, got {_json_type(record)}")
    missing = [field for field in _FIELDS if field not in record]
    if missing:
        raise file_error(path, f"{where}: {what} lacks {', '.join(repr(field) for field in missing)}")
    for field in _FIELDS:
        value = record[field]
        if isinstance(value, bool) or not isinstance(value, int):
            raise file_error(path, f"{where}: {what} has {field} = {json.dumps(value)}; x, y, width and height must be integers")
    if record["width"] < 0 or record["height"] < 0:
        raise file_error(path, f"{where}: {what} has a negative size (width {record['width']}, height {record['height']})")
    label = record.get("label")
    if label is not None and not isinstance(label, str):
        raise file_error(path, f"{where}: {what} has label = {json.dumps(label)}; a label must be a string")
    return Box(record["x"], record["y"], record["width"], record["height"], label)


# ------------------------------------------------------------------------------------------------ writing


def annotations_attr(boxes_by_slice: Mapping[int, Sequence[Box]]) -> str:
    """The JSON string to store as ``attrs['annotations']``: compact and deterministic.

    Slices in increasing order, each slice's boxes in the given order, slices without boxes left out.
    """
    record = {}
    for index, boxes in sorted(boxes_by_slice.items()):
        if int(index) < 0:
            raise ValueError(f"slice index {index} is negative")
        if boxes:
            record[str(int(index))] = [box.as_json() for box in boxes]
    return json.dumps(record, separators=(",", ":"))


# ------------------------------------------------------------------------------------------------ geometry


def clip_box(box: Box, shape: tuple[int, int] = CHALLENGE_SHAPE) -> Box:
    """``box`` cut to an image of ``shape`` = (rows, columns); width or height 0 when nothing is left."""
    rows, columns = shape
    left, top = min(max(box.x, 0), columns), min(max(box.y, 0), rows)
    right, bottom = min(max(box.x + box.width, left), columns), min(max(box.y + box.height, top), rows)
    return Box(left, top, right - left, bottom - top, box.label)


def scored_boxes(boxes: Sequence[Box], shape: tuple[int, int] = CHALLENGE_SHAPE, window: int = SSIM_WINDOW) -> list[Box]:
    """The boxes the scorer uses, clipped to ``shape``: those at least ``window`` pixels wide and high."""
    clipped = (clip_box(box, shape) for box in boxes)
    return [box for box in clipped if box.width >= window and box.height >= window]


def box_mask(boxes: Sequence[Box], shape: tuple[int, int] = CHALLENGE_SHAPE) -> np.ndarray:
    """Bool ``shape`` image, True inside any of ``boxes`` (clipped to the image; small boxes included)."""
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        box = clip_box(box, shape)
        mask[box.y : box.y + box.height, box.x : box.x + box.width] = True
    return mask


def bounding_box(mask: np.ndarray, label: str | None = None) -> Box | None:
    """The tight box around the True pixels of a (rows, columns) ``mask``; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Box(int(columns[0]), int(rows[0]), int(columns[-1] - columns[0] + 1), int(rows[-1] - rows[0] + 1), label)


def crop_box(box: Box, grid_shape: tuple[int, int], shape: tuple[int, int] = CHALLENGE_SHAPE) -> Box:
    """A box of pixels of a (H, W) image grid, where :func:`center_crop_or_pad` to ``shape`` puts them; clipped.

    For the k-space grid (H = 768 brain with 2x readout oversampling, W = 320..480) and ``shape`` (384, 384)
    this is the box in ``image_label``.
    """
    moved = Box(box.x + center_shift(grid_shape[1], shape[1]), box.y + center_shift(grid_shape[0], shape[0]),
                box.width, box.height, box.label)
    return clip_box(moved, shape)


def crop_boxes(boxes_by_slice: Mapping[int, Sequence[Box]], grid_shape: tuple[int, int],
               shape: tuple[int, int] = CHALLENGE_SHAPE) -> dict[int, list[Box]]:
    """:func:`crop_box` of every box; boxes left empty by the crop and slices left without boxes are dropped."""
    cropped = {}
    for index, boxes in sorted(boxes_by_slice.items()):
        kept = [box for box in (crop_box(box, grid_shape, shape) for box in boxes) if box.width and box.height]
        if kept:
            cropped[index] = kept
    return cropped


def fastmri_plus_to_challenge(box: Box, shape: tuple[int, int] = CHALLENGE_SHAPE) -> Box:
    """A fastMRI+ box (320 x 320 ``reconstruction_rss`` flipped up-down) in the ``shape`` space of image_label.

    Row ``y`` of the flipped image is row ``319 - y`` of reconstruction_rss, so the box's rows
    ``y:y + height`` are rows ``320 - y - height:320 - y`` there; both crops are centred alike, so
    reconstruction_rss's pixel (r, c) is image_label's (r + 32, c + 32).
    """
    recon_rows, recon_columns = FASTMRI_PLUS_SHAPE
    top = recon_rows - box.y - box.height
    return Box(box.x + center_shift(recon_columns, shape[1]), top + center_shift(recon_rows, shape[0]),
               box.width, box.height, box.label)


def challenge_to_fastmri_plus(box: Box, shape: tuple[int, int] = CHALLENGE_SHAPE) -> Box:
    """The inverse of :func:`fastmri_plus_to_challenge`, clipped to the 320 x 320 image (may leave it empty)."""
    recon_rows, recon_columns = FASTMRI_PLUS_SHAPE
    unflipped = Box(box.x - center_shift(recon_columns, shape[1]), box.y - center_shift(recon_rows, shape[0]),
                    box.width, box.height, box.label)
    inside = clip_box(unflipped, FASTMRI_PLUS_SHAPE)
    return Box(inside.x, recon_rows - inside.y - inside.height, inside.width, inside.height, inside.label)

