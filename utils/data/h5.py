"""The gate for challenge h5 files: reading them with errors that name the file, not h5py's internals.

Keys (SPEC §1): k-space files hold ``kspace`` complex64 (S, C, H, W) and ``mask`` (W,) of 0/1; image files hold
``image_label`` (S, 384, 384) float32 with attribute ``max`` (plus ``image_input``, ``image_grappa`` and
attribute ``norm``, which nothing here needs); reconstructions hold ``reconstruction`` (S, 384, 384). Whatever
h5py or numpy raise on a truncated, corrupt or foreign file, and every wrong key, dtype, shape, value or
attribute, becomes one :class:`~utils.errors.UserInputError` naming the file (and the slice, for NaN or Inf
values: :func:`require_finite`).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import h5py
import numpy as np

from utils.errors import file_error

__all__ = ["READ_ERRORS", "open_h5", "require_dataset", "require_attr", "require_finite", "read_slice", "read_volume", "KspaceInfo", "ImageInfo",
           "read_kspace_info", "read_image_info"]

# what h5py and numpy raise on a corrupt file or a foreign dtype (a truncated chunk, an undecodable filter, ...)
READ_ERRORS = (OSError, ValueError, TypeError, RuntimeError, KeyError, IndexError, AttributeError)
_KINDS = {"complex": "c", "real": "fiu"}
MAX_SIDE, MAX_COILS = 4096, 128  # far above the challenge's (768 x 480, 20 coils): a bound, not a taste


def open_h5(path: str | Path) -> h5py.File:
    """Open ``path`` read-only; a missing, truncated or non-HDF5 file raises UserInputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "file not found")
    try:
        return h5py.File(path, "r")
    except READ_ERRORS as err:
        raise file_error(path, f"cannot be read as HDF5 ({_open_failure(str(err))})") from None


def _open_failure(message: str) -> str:
    """What h5py's open error means, in words: truncated, not HDF5 at all, or otherwise corrupt."""
    truncated = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", message)
    if truncated:
        return f"truncated: {truncated[1]} of {truncated[2]} bytes present"
    if "file signature not found" in message:
        return "not an HDF5 file, or its header is corrupt"
    return "truncated or corrupt?"


def require_dataset(handle: h5py.File, key: str, ndim: int | None = None, kind: str | None = None) -> h5py.Dataset:
    """``handle[key]``, checked to exist (with ``ndim`` axes, of ``kind`` 'complex' or 'real' numbers); else a
    UserInputError naming the file."""
    try:
        if key not in handle:
            raise file_error(handle.filename, f"missing key '{key}' (keys present: {sorted(handle.keys())})")
        dataset = handle[key]
    except READ_ERRORS:
        raise file_error(handle.filename, f"'{key}' cannot be read (truncated or corrupt?)") from None
    if not isinstance(dataset, h5py.Dataset):
        raise file_error(handle.filename, f"'{key}' is a group, not a dataset")
    if ndim is not None and dataset.ndim != ndim:
        raise file_error(handle.filename, f"'{key}' has shape {dataset.shape}, expected {ndim} axes")
    if kind is not None and dataset.dtype.kind not in _KINDS[kind]:
        raise file_error(handle.filename, f"'{key}' has dtype {dataset.dtype}, expected {kind} numbers")
    return dataset


def read_slice(dataset: h5py.Dataset, index: int | tuple = ()) -> np.ndarray:
    """``dataset[index]``; a read that fails (a truncated or corrupt chunk) is a UserInputError naming the file."""
    try:
        return dataset[index]
    except READ_ERRORS:
        where = f" slice {index}" if isinstance(index, int) else ""
        raise file_error(dataset.file.filename, f"'{dataset.name.lstrip('/')}'{where} cannot be read (truncated or corrupt?)") from None


def read_volume(dataset: h5py.Dataset) -> np.ndarray:
    """``dataset[()]`` (a UserInputError naming the file if it cannot be read), in one ``pread`` when the data lie
    contiguous and unfiltered in the file (h5py's own read holds the GIL; this one lets the scorer's other threads
    compute meanwhile); any other layout, or a system without ``os.preadv`` (Windows), goes through h5py."""
    offset = dataset.id.get_offset()
    if (offset is None or not hasattr(os, "preadv") or dataset.chunks is not None or dataset.external is not None
            or dataset.is_virtual or dataset.file.userblock_size or dataset.dtype.kind not in "fiuc"):
        return read_slice(dataset)
    volume = np.empty(dataset.shape, dataset.dtype)
    try:
        descriptor = os.open(dataset.file.filename, os.O_RDONLY)
        try:
            count = os.preadv(descriptor, [volume.reshape(-1).view(np.uint8)], offset)
        finally:
            os.close(descriptor)
    except OSError:
        count = -1
    if count != volume.nbytes:
        raise file_error(dataset.file.filename, f"'{dataset.name.lstrip('/')}' cannot be read (truncated or corrupt?)")
    return volume


def require_finite(path: str | Path, key: str, data: np.ndarray, slice_index: int | None = None) -> None:
    """Refuse NaN or Inf in ``data``: one slice (``slice_index``) or a whole volume (axis 0: slices), naming the
    (first) slice that holds them."""
    if np.isfinite(data).all():
        return
    if slice_index is None:
        slice_index = int(np.flatnonzero(~np.isfinite(data.reshape(len(data), -1)).all(axis=1))[0])
    raise file_error(path, f"slice {slice_index} of '{key}' holds NaN or Inf values")


def require_attr(handle: h5py.File, name: str) -> float:
    """A finite, positive scalar attribute (the volume ``max``); else UserInputError naming the file."""
    try:
        if name not in handle.attrs:
            raise file_error(handle.filename, f"missing attribute '{name}'")
        value = np.asarray(handle.attrs[name])
    except READ_ERRORS:
        raise file_error(handle.filename, f"attribute '{name}' cannot be read (truncated or corrupt?)") from None
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


def _check_mask(path: str | Path, mask: h5py.Dataset, width: int) -> None:
    if mask.ndim != 1 or mask.shape[0] != width:
        raise file_error(path, f"'mask' has shape {mask.shape} but the k-space width is {width}")
    if mask.dtype.kind not in "fiub":
        raise file_error(path, f"'mask' has dtype {mask.dtype}, expected numbers 0 and 1")
    values = read_slice(mask)
    if not np.isin(values, (0, 1)).all() or not values.any():
        raise file_error(path, "'mask' must hold 0s and 1s with at least one sampled line")


def read_kspace_info(path: str | Path) -> KspaceInfo:
    """Check a k-space file's keys, dtype, sizes and mask; return its shape facts."""
    with open_h5(path) as handle:
        kspace = require_dataset(handle, "kspace", ndim=4)
        if not np.issubdtype(kspace.dtype, np.complexfloating):
            raise file_error(path, f"'kspace' must be complex, got dtype {kspace.dtype}")
        num_slices, num_coils, height, width = kspace.shape
        if num_slices == 0:
            raise file_error(path, "'kspace' holds no slices")
        if not (1 <= num_coils <= MAX_COILS and 16 <= height <= MAX_SIDE and 16 <= width <= MAX_SIDE):
            raise file_error(path, f"'kspace' has shape {kspace.shape}: coils must be 1..{MAX_COILS}, H and W 16..{MAX_SIDE}")
        _check_mask(path, require_dataset(handle, "mask"), width)
    return KspaceInfo(num_slices, num_coils, height, width)


def read_image_info(path: str | Path) -> ImageInfo:
    """Check an image file's ``image_label`` and ``max``; return its shape facts."""
    with open_h5(path) as handle:
        label = require_dataset(handle, "image_label", ndim=3, kind="real")
        max_value = require_attr(handle, "max")
        if label.shape[0] == 0 or not all(16 <= side <= MAX_SIDE for side in label.shape[1:]):
            raise file_error(path, f"'image_label' has shape {label.shape}, expected (slices, 384, 384)")
        return ImageInfo(label.shape[0], tuple(label.shape[1:]), max_value)
