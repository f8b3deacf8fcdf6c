"""The fastMRI files to convert: finding them, checking them, telling brain from knee, reading their slices.

A public fastMRI multicoil train/val file holds ``kspace`` complex64 (slices, coils, H, W), fully sampled,
``reconstruction_rss``, the attributes ``max``, ``norm``, ``acquisition``, ``patient_id`` and the dataset
``ismrmrd_header``. Only ``kspace`` is needed: the challenge images are recomputed from it at 384x384
(``reconstruction_rss`` is a 320x320 crop). Everything that a file's metadata can tell is checked before
anything is written, so a singlecoil file, a fastMRI test file (under-sampled, with a ``mask``), a missing
``kspace`` or an odd shape stops the run with one line naming the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from utils.data.h5 import open_h5, require_dataset
from utils.data.layout import ANATOMIES
from utils.errors import UserInputError, file_error

__all__ = ["MIN_SIZE", "SourceVolume", "find_sources", "read_source", "kspace_slices"]

MIN_SIZE = 128  # smallest H and W accepted: the 384x384 grid is padded, but a centre block must fit GRAPPA
_KNEE_NAME = re.compile(r"^file\d+(_v\d+)?\.h5$")  # file1000001.h5
# fastMRI acquisitions: knee CORPD_FBK / CORPDFS_FBK, brain AXT1 / AXT1PRE / AXT1POST / AXT2 / AXFLAIR
_ACQUISITION_ANATOMY = (("COR", "knee"), ("AX", "brain"))
# Under-sampled k-space has most of its phase-encode columns all zero; knee k-space only a few padded ones.
_MAX_ZERO_COLUMNS = 0.5


@dataclass(frozen=True)
class SourceVolume:
    """One fastMRI file and what its metadata says."""

    path: Path
    anatomy: str
    num_slices: int
    num_coils: int
    height: int
    width: int
    acquisition: str

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.num_slices, self.num_coils, self.height, self.width)


def find_sources(sources: Sequence[str | Path]) -> list[Path]:
    """The .h5 files of every source folder (natural order within a folder) and every source file.

    A missing source, a folder without .h5 files and a file name found twice (the same volume given twice:
    it could land in two splits) are errors.
    """
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(source.glob("*.h5"))
            if not found:
                raise UserInputError(f"{source}: the folder holds no .h5 files")
            files += found
        elif source.is_file():
            files.append(source)
        else:
            raise UserInputError(f"{source}: no such file or folder")
    seen: dict[str, Path] = {}
    for path in files:
        if path.name in seen:
            raise file_error(path, f"the same file name is also in {seen[path.name].parent}: give each volume once")
        seen[path.name] = path
    return files


def _anatomy(path: Path, acquisition: str, forced: str | None) -> str:
    """Brain or knee: the flag, else the fastMRI file name, else the ``acquisition`` attribute."""
    if forced is not None:
        return forced
    if path.name.startswith("file_brain_"):
        return "brain"
    if _KNEE_NAME.match(path.name):
        return "knee"
    if path.name.startswith("file_prostate_"):
        raise file_error(path, "is a fastMRI prostate file; only brain and knee files can be converted")
    for prefix, anatomy in _ACQUISITION_ANATOMY:
        if acquisition.upper().startswith(prefix):
            return anatomy
    raise file_error(
        path, "neither its name (file_brain_*.h5, file<N>.h5) nor its acquisition tells brain from knee; pass --anatomy"
    )


def read_source(path: Path, anatomy: str | None = None) -> SourceVolume:
    """Check one fastMRI file's metadata; raises UserInputError naming it when it cannot be converted."""
    if anatomy is not None and anatomy not in ANATOMIES:
        raise UserInputError(f"--anatomy {anatomy}: choose one of {', '.join(ANATOMIES)}")
    with open_h5(path) as handle:
        kspace = require_dataset(handle, "kspace")
        if kspace.ndim == 3 or "reconstruction_esc" in handle:
            raise file_error(
                path, f"is a singlecoil file ('kspace' has shape {kspace.shape}); convert multicoil files (slices, coils, H, W)"
            )
        if kspace.ndim != 4:
            raise file_error(path, f"'kspace' has shape {kspace.shape}; expected 4 axes (slices, coils, H, W)")
        if not np.issubdtype(kspace.dtype, np.complexfloating):
            raise file_error(path, f"'kspace' must be complex, got dtype {kspace.dtype}")
        if "mask" in handle:
            raise file_error(
                path,
                "holds under-sampled k-space with a 'mask' (a fastMRI test or challenge file); "
                "convert fully sampled train/val files",
            )
        num_slices, num_coils, height, width = kspace.shape
        if num_slices == 0:
            raise file_error(path, "'kspace' holds no slices")
        if num_coils < 2:
            raise file_error(path, f"'kspace' has shape {kspace.shape}: {num_coils} coil, not multicoil data")
        if min(height, width) < MIN_SIZE:
            raise file_error(path, f"'kspace' has shape {kspace.shape}: H and W must be at least {MIN_SIZE}")
        acquisition = handle.attrs.get("acquisition", "")
        acquisition = acquisition.decode() if isinstance(acquisition, bytes) else str(acquisition)
    return SourceVolume(path, _anatomy(path, acquisition, anatomy), num_slices, num_coils, height, width, acquisition)


def kspace_slices(handle: h5py.File, source: SourceVolume) -> Iterator[np.ndarray]:
    """The (C, H, W) complex64 slices of an open source file; NaN/Inf or mostly empty columns are errors."""
    kspace = handle["kspace"]
    for index in range(source.num_slices):
        try:
            data = np.asarray(kspace[index], dtype=np.complex64)
        except OSError:
            raise file_error(source.path, f"slice {index} of 'kspace' cannot be read (truncated or corrupt?)") from None
        if not np.isfinite(data).all():
            raise file_error(source.path, f"slice {index} of 'kspace' holds NaN or Inf values")
        empty = int((~np.any(data != 0, axis=(0, 1))).sum())
        if empty > _MAX_ZERO_COLUMNS * source.width:
            raise file_error(
                source.path,
                f"slice {index} of 'kspace' has {empty} of {source.width} columns all zero: it is under-sampled, "
                "and the converter needs fully sampled k-space",
            )
        yield data
