"""Reading challenge h5 files with errors that name the file, not h5py's internals.

Keys (SPEC §1): k-space files hold ``kspace`` complex64 (S, C, H, W) and ``mask`` (W,); image files hold
``image_label`` (S, 384, 384) float32 with attribute ``max`` (plus ``image_input``, ``image_grappa`` and
attribute ``norm``, which nothing here needs).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import h5py
import numpy as np

from utils.errors import file_error

__all__ = ["open_h5", "require_dataset", "require_attr", "KspaceInfo", "ImageInfo", "read_kspace_info", "read_image_info"]


def open_h5(path: str | Path) -> h5py.File:
    """Open ``path`` read-only; a missing, truncated or non-HDF5 file raises UserInputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise file_error(path, f"cannot be read as HDF5 ({_open_failure(str(err))})") from err


def _open_failure(message: str) -> str:
    """What h5py's open error means, in words: truncated, not HDF5 at all, or otherwise corrupt."""
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", message)
    if truncated:
        return f"truncated: {truncated[1]} of {truncated[2]} bytes present"
    if "file signature not found" in message:
        return "not an HDF5 file, or its header is corrupt"
    return "truncated or corrupt?"


def require_dataset(handle: h5py.File, key: str, ndim: int | None = None) -> h5py.Dataset:
    """``handle[key]``, checked to exist (and to have ``ndim`` axes); else UserInputError naming the file."""
    if key not in handle:
        raise file_error(handle.filename, f"missing key '{key}' (keys present: {sorted(handle.keys())})")
    dataset = handle[key]
    if not isinstance(dataset, h5py.Dataset):
        raise file_error(handle.filename, f"'{key}' is a group, not a dataset")
    if ndim is not None and dataset.ndim != ndim:
        raise file_error(handle.filename, f"'{key}' has shape {dataset.shape}, expected {ndim} axes")
    return dataset


def require_attr(handle: h5py.File, name: str) -> float:
    """A finite, positive scalar attribute (the volume ``max``); else UserInputError naming the file."""
    if name not in handle.attrs:
        raise file_error(handle.filename, f"missing attribute '{name}'")
    value = np.asarray(handle.attrs[name])
    # a string, complex or array attribute is the file's fault: one sentence, not a traceback from numpy
    number = float(value.reshape(-1)[0]) if value.size == 1 and value.dtype.kind in "fiu" else math.nan
    if not math.isfinite(number) or number <= 0:
        raise file_error(handle.filename, f"attribute '{name}' must be one finite positive number, got {value!r}")
    return number


class KspaceInfo:
    """Shape facts of one k-space file, read once at dataset construction."""

    def __init__(self, num_slices: int, num_coils: int, height: int, width: int):
        self.num_slices, self.num_coils, self.height, self.width = num_slices, num_coils, height, width


class ImageInfo:
    """Shape facts of one image file: slice count, image shape and the volume ``max``."""

    def __init__(self, num_slices: int, image_shape: tuple[int, int], max_value: float):
        self.num_slices, self.image_shape, self.max_value = num_slices, image_shape, max_value


def read_kspace_info(path: str | Path) -> KspaceInfo:
    """Check a k-space file's keys, dtype and mask length; return its shape facts."""
    with open_h5(path) as handle:
        kspace = require_dataset(handle, "kspace", ndim=4)
        if not np.issubdtype(kspace.dtype, np.complexfloating):
            raise file_error(path, f"'kspace' must be complex, got dtype {kspace.dtype}")
        mask = require_dataset(handle, "mask")
        num_slices, num_coils, height, width = kspace.shape
        if mask.ndim != 1 or mask.shape[0] != width:
            raise file_error(path, f"'mask' has shape {mask.shape} but the k-space width is {width}")
        if num_slices == 0:
            raise file_error(path, "'kspace' holds no slices")
    return KspaceInfo(num_slices, num_coils, height, width)


def read_image_info(path: str | Path) -> ImageInfo:
    """Check an image file's ``image_label`` and ``max``; return its shape facts."""
    with open_h5(path) as handle:
        label = require_dataset(handle, "image_label", ndim=3)
        max_value = require_attr(handle, "max")
        return ImageInfo(label.shape[0], tuple(label.shape[1:]), max_value)
