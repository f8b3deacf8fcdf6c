"""Synthetic volumes written like the public fastMRI multicoil train/val files, to test the converter with.

A fastMRI multicoil file (Zbontar et al. 2018, fastmri.org) holds
    kspace              complex64 (slices, coils, H, W), fully sampled, DC at (H // 2, W // 2)
    reconstruction_rss  float32 (slices, 320, 320): centre crop of RSS(ifft2c(kspace))
    ismrmrd_header      the ISMRMRD XML header, bytes
    attrs               acquisition ('CORPD_FBK', 'CORPDFS_FBK', 'AXT1', 'AXT1POST', 'AXT2', 'AXFLAIR'),
                        max and norm of reconstruction_rss, patient_id
and is named ``file1000001.h5`` (knee) or ``file_brain_AXT2_200_6002217.h5`` (brain). The volumes are
simulated as for the challenge layout (:func:`utils.data.synthetic.simulate.simulate_volume`) on the matrix
sizes of real fastMRI scans: knee 640 x 368 or 640 x 372, brain 640 x 320 or 768 x 396. A preset writes as
many volumes per anatomy as its challenge layout holds (train + val + leaderboard), with its coils and slices.

Their synthetic lesions (:mod:`utils.data.synthetic.lesions`) are listed as fastMRI+ annotations would list
them: ``Annotations/brain.csv`` and ``Annotations/knee.csv`` beside the files (:mod:`utils.data.fastmri_plus`),
boxes in the 320 x 320 space of ``reconstruction_rss`` flipped up-down, as microsoft/fastmri-plus draws them.
Each file also carries its own rows as the JSON attribute ``fastmri_plus`` (not a fastMRI attribute), from
which the CSVs are assembled after every run, so a resumed run lists every volume.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from utils.atomic import atomic_path
from utils.data.annotations import annotations_attr, challenge_to_fastmri_plus, crop_boxes, parse_annotations
from utils.data.fastmri_plus import write_fastmri_plus
from utils.data.layout import ACCELERATIONS, ANATOMIES
from utils.data.synthetic.presets import Preset
from utils.data.synthetic.simulate import VolumeRecipe, draw_recipe, simulate_volume
from utils.mri.coils import rss
from utils.mri.crop import center_crop_or_pad
from utils.mri.fft import ifft2c

__all__ = [
    "FASTMRI_MATRICES",
    "ACQUISITIONS",
    "RECONSTRUCTION_SHAPE",
    "FastmriJob",
    "fastmri_recipe",
    "plan_fastmri_jobs",
    "write_fastmri_volume",
    "ANNOTATIONS_DIR",
    "write_annotation_csvs",
]

RECONSTRUCTION_SHAPE = (320, 320)
# (H, W, pixel mm) of real fastMRI multicoil scans; H is the 2x-oversampled readout.
FASTMRI_MATRICES = {"brain": ((640, 320, 0.69), (768, 396, 0.55)), "knee": ((640, 368, 0.45), (640, 372, 0.45))}
# fastMRI's acquisition names for the simulator's contrasts
ACQUISITIONS = {"T1": "AXT1", "T1POST": "AXT1POST", "T2": "AXT2", "FLAIR": "AXFLAIR", "PD": "CORPD_FBK", "PDFS": "CORPDFS_FBK"}
ANNOTATIONS_DIR = "Annotations"  # as in microsoft/fastmri-plus: Annotations/knee.csv, Annotations/brain.csv
_ROWS_ATTR = "fastmri_plus"  # a file's own fastMRI+ boxes, JSON as utils.data.annotations writes them
_FORMAT_CODE = 3  # after the challenge layout's split codes 0, 1, 2: separate random streams
_ANATOMY_CODES = {"brain": 0, "knee": 1}


@dataclass(frozen=True)
class FastmriJob:
    """One fastMRI-format volume: its anatomy, its index among that anatomy's volumes, and its file."""

    anatomy: str
    index: int
    path: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    @property
    def done(self) -> bool:
        return self.path.is_file()


def _draw(seed: int, preset: Preset, anatomy: str, index: int) -> tuple[np.random.Generator, VolumeRecipe, int]:
    """The volume's generator, its recipe on a fastMRI matrix, and the site number in a brain file's name."""
    rng = np.random.default_rng([seed, _FORMAT_CODE, _ANATOMY_CODES[anatomy], index])
    recipe = draw_recipe(rng, preset, anatomy, ACCELERATIONS[0], leaderboard=False)
    matrices = FASTMRI_MATRICES[anatomy]
    height, width, pixel_mm = matrices[int(rng.integers(len(matrices)))]
    jitter = recipe.pixel_mm / preset.geometry(anatomy).pixel_mm
    recipe = dataclasses.replace(recipe, height=height, width=width, pixel_mm=pixel_mm * jitter)
    return rng, recipe, int(rng.integers(200, 211))


def fastmri_recipe(seed: int, preset: Preset, anatomy: str, index: int) -> VolumeRecipe:
    """The recipe of volume ``index`` of ``anatomy`` (cheap: for size estimates)."""
    return _draw(seed, preset, anatomy, index)[1]


def _filename(anatomy: str, index: int, acquisition: str, site: int) -> str:
    if anatomy == "brain":
        return f"file_brain_{acquisition}_{site}_{6000000 + index}.h5"
    return f"file{1000000 + index}.h5"


def plan_fastmri_jobs(out: Path, preset: Preset, seed: int) -> list[FastmriJob]:
    """Every fastMRI-format volume of ``preset``: per anatomy, as many as its challenge layout holds."""
    per_anatomy = len(ACCELERATIONS) * (preset.train_per_group + preset.val_per_group + preset.leaderboard_per_anatomy)
    jobs = []
    for anatomy in ANATOMIES:
        for index in range(1, per_anatomy + 1):
            _, recipe, site = _draw(seed, preset, anatomy, index)
            jobs.append(FastmriJob(anatomy, index, out / _filename(anatomy, index, ACQUISITIONS[recipe.contrast], site)))
    return jobs


def _ismrmrd_header(recipe: VolumeRecipe, acquisition: str) -> bytes:
    """A minimal ISMRMRD header with the fields fastMRI's own data loader reads (matrix sizes, encoding limits)."""
    fov_x, fov_y = recipe.height * recipe.pixel_mm, recipe.width * recipe.pixel_mm

    def space(x: int, y: int, fov_x: float) -> str:
        return (f"<matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>"
                f"<fieldOfView_mm><x>{fov_x:.1f}</x><y>{fov_y:.1f}</y><z>5.0</z></fieldOfView_mm>")

    step = f"<minimum>0</minimum><maximum>{recipe.width - 1}</maximum><center>{recipe.width // 2}</center>"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <measurementInformation><protocolName>{acquisition}</protocolName></measurementInformation>
  <acquisitionSystemInformation>
    <systemFieldStrength_T>3.0</systemFieldStrength_T><receiverChannels>{recipe.num_coils}</receiverChannels>
  </acquisitionSystemInformation>
  <encoding>
    <encodedSpace>{space(recipe.height, recipe.width, fov_x)}</encodedSpace>
    <reconSpace>{space(320, 320, fov_x / 2)}</reconSpace>
    <encodingLimits><kspace_encoding_step_1>{step}</kspace_encoding_step_1></encodingLimits>
  </encoding>
</ismrmrdHeader>
""".encode()


def write_fastmri_volume(job: FastmriJob, seed: int, preset: Preset) -> None:
    """Simulate the volume of ``job`` and write it as one fastMRI multicoil file (atomically)."""
    rng, recipe, _ = _draw(seed, preset, job.anatomy, job.index)
    acquisition = ACQUISITIONS[recipe.contrast]
    shape = (recipe.num_slices, recipe.num_coils, recipe.height, recipe.width)
    target = np.empty((recipe.num_slices, *RECONSTRUCTION_SHAPE), np.float32)
    boxes, slices = simulate_volume(rng, recipe)
    with atomic_path(job.path) as temporary, h5py.File(temporary, "w") as handle:
        kspace = handle.create_dataset("kspace", shape=shape, dtype=np.complex64)
        for index, slice_kspace in enumerate(slices):
            kspace[index] = slice_kspace
            image = rss(ifft2c(torch.from_numpy(slice_kspace)), dim=0)
            target[index] = center_crop_or_pad(image, RECONSTRUCTION_SHAPE).numpy()
        handle.create_dataset("reconstruction_rss", data=target)
        handle.create_dataset("ismrmrd_header", data=_ismrmrd_header(recipe, acquisition))
        patient = hashlib.sha256(f"{seed}/{job.anatomy}/{job.index}".encode()).hexdigest()
        handle.attrs.update(
            {"acquisition": acquisition, "max": float(target.max()), "norm": float(np.linalg.norm(target)), "patient_id": patient}
        )
        handle.attrs[_ROWS_ATTR] = annotations_attr(_fastmri_plus_boxes(boxes, (recipe.height, recipe.width)))


def _fastmri_plus_boxes(boxes: dict, grid_shape: tuple[int, int]) -> dict:
    """Boxes by slice in the (H, W) grid -> in fastMRI+'s space; boxes outside the 320 x 320 crop are dropped."""
    in_fastmri_plus = {}
    for index, slice_boxes in crop_boxes(boxes, grid_shape).items():
        moved = [challenge_to_fastmri_plus(box) for box in slice_boxes]
        in_fastmri_plus[index] = [box for box in moved if box.width and box.height]
    return in_fastmri_plus


def write_annotation_csvs(out: Path, jobs: list[FastmriJob]) -> None:
    """``out/Annotations/{brain,knee}.csv``: the fastMRI+ rows of every written file of ``jobs``."""
    folder = out / ANNOTATIONS_DIR
    folder.mkdir(exist_ok=True)
    for anatomy in ANATOMIES:
        files = {}
        for job in jobs:
            if job.anatomy == anatomy and job.done:
                with h5py.File(job.path, "r") as handle:
                    files[job.path.stem] = parse_annotations(handle.attrs.get(_ROWS_ATTR, "{}"), job.path)
        write_fastmri_plus(folder / f"{anatomy}.csv", files)
