"""Write a whole synthetic dataset in the challenge layout (SPEC §1), or as public fastMRI files.

Jobs are independent files, each seeded by (seed, split, anatomy, acceleration, index), so the output is the
same for any number of worker processes. Every file is written to a temporary file and renamed, and a volume
whose files all exist is skipped, so an interrupted run resumes where it stopped. A manifest records the
preset and seed: asking for a different one in a non-empty folder is refused unless ``overwrite``, and a
folder of .h5 files the generator did not write is never touched (:mod:`utils.data.output_folder`).
``file_format="fastmri"`` writes fastMRI multicoil files instead (:mod:`utils.data.synthetic.fastmri_format`),
the input of ``python -m utils.data.convert_fastmri``, and the fastMRI+-style CSVs of their lesions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.data.layout import ACCELERATIONS, ANATOMIES, leaderboard_filename, volume_filename
from utils.data.output_folder import claim_folder, remove_temporaries, remove_unplanned, run_jobs
from utils.data.synthetic.fastmri_format import (
    RECONSTRUCTION_SHAPE,
    FastmriJob,
    fastmri_recipe,
    plan_fastmri_jobs,
    write_annotation_csvs,
    write_fastmri_volume,
)
from utils.data.synthetic.presets import Preset, get_preset
from utils.data.synthetic.simulate import VolumeRecipe, draw_recipe, write_volume
from utils.errors import UserInputError

__all__ = ["DEFAULT_SEED", "MANIFEST_NAME", "FORMATS", "Job", "plan_jobs", "estimate_bytes", "generate"]

DEFAULT_SEED = 430
MANIFEST_NAME = ".synthetic.json"
FORMATS = ("challenge", "fastmri")
_SPLIT_CODES = {"train": 0, "val": 1, "leaderboard": 2}
_ANATOMY_CODES = {"brain": 0, "knee": 1}


@dataclass(frozen=True)
class Job:
    """One volume to write: where, and the key its random stream is seeded with."""

    split: str
    anatomy: str
    acceleration: int
    index: int
    kspace_path: Path
    image_path: Path

    def rng(self, seed: int) -> np.random.Generator:
        key = [seed, _SPLIT_CODES[self.split], _ANATOMY_CODES[self.anatomy], self.acceleration, self.index]
        return np.random.default_rng(key)

    def recipe(self, seed: int, preset: Preset) -> tuple[np.random.Generator, VolumeRecipe]:
        rng = self.rng(seed)
        return rng, draw_recipe(rng, preset, self.anatomy, self.acceleration, self.split == "leaderboard")

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self.kspace_path, self.image_path)

    @property
    def done(self) -> bool:
        return self.kspace_path.is_file() and self.image_path.is_file()


def plan_jobs(out: Path, preset: Preset) -> list[Job]:
    """Every volume of ``preset`` under ``out``: train n = 1..T, val n = T+1..T+V, leaderboard test1..L."""
    jobs = []
    first_index = {"train": 1, "val": 1 + preset.train_per_group}
    counts = {"train": preset.train_per_group, "val": preset.val_per_group}
    for split in ("train", "val"):
        for anatomy in ANATOMIES:
            for acceleration in ACCELERATIONS:
                for index in range(first_index[split], first_index[split] + counts[split]):
                    name = volume_filename(anatomy, acceleration, index)
                    folder = out / split
                    jobs.append(Job(split, anatomy, acceleration, index, folder / "kspace" / name, folder / "image" / name))
    for acceleration in ACCELERATIONS:
        folder = out / "leaderboard" / f"acc{acceleration}"
        for anatomy in ANATOMIES:
            for index in range(1, preset.leaderboard_per_anatomy + 1):
                name = leaderboard_filename(anatomy, index)
                jobs.append(
                    Job("leaderboard", anatomy, acceleration, index, folder / "kspace" / name, folder / "image" / name)
                )
    return jobs


def _check_seed(seed: int) -> None:
    """numpy seeds every job with ``[seed, ...]``, which takes non-negative integers only."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"--seed {seed}: the seed must be a non-negative integer")


def estimate_bytes(preset: Preset, seed: int = DEFAULT_SEED, file_format: str = "challenge") -> tuple[int, int]:
    """(k-space bytes, image bytes) the preset writes, from the drawn recipes (exact up to h5 overhead).

    For ``file_format="fastmri"`` the image bytes are those of ``reconstruction_rss``.
    """
    _check_seed(seed)
    if file_format == "fastmri":
        recipes = [fastmri_recipe(seed, preset, job.anatomy, job.index) for job in plan_fastmri_jobs(Path("."), preset, seed)]
        return sum(r.kspace_bytes for r in recipes), sum(r.num_slices * math.prod(RECONSTRUCTION_SHAPE) * 4 for r in recipes)
    recipes = [job.recipe(seed, preset)[1] for job in plan_jobs(Path("."), preset)]
    return sum(r.kspace_bytes for r in recipes), sum(r.image_bytes for r in recipes)


def _write_challenge_volume(args: tuple[Job, int, Preset]) -> None:
    job, seed, preset = args
    rng, recipe = job.recipe(seed, preset)
    write_volume(rng, recipe, job.kspace_path, job.image_path)


def _write_fastmri_volume(args: tuple[FastmriJob, int, Preset]) -> None:
    write_fastmri_volume(*args)


def generate(
    out: str | Path,
    preset_name: str = "demo",
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    splits: tuple[str, ...] = ("train", "val", "leaderboard"),
    file_format: str = "challenge",
) -> list[Job] | list[FastmriJob]:
    """Write (or complete) the ``splits`` of preset ``preset_name`` under ``out``; returns the jobs written.

    ``file_format="fastmri"`` writes the preset's volumes as public fastMRI multicoil files instead, all in
    ``out`` (``splits`` does not apply): :mod:`utils.data.synthetic.fastmri_format`.
    """
    out = Path(out)
    try:
        preset = get_preset(preset_name)
    except ValueError as err:
        raise UserInputError(str(err)) from None
    if file_format not in FORMATS:
        raise UserInputError(f"--format {file_format}: choose one of {', '.join(FORMATS)}")
    _check_seed(seed)
    manifest = {"preset": preset.name, "seed": seed}
    if file_format == "fastmri":
        manifest["format"] = file_format  # challenge-layout manifests stay as they were: old folders still resume
        planned, write = plan_fastmri_jobs(out, preset, seed), _write_fastmri_volume
        jobs = planned
    else:
        planned, write = plan_jobs(out, preset), _write_challenge_volume
        jobs = [job for job in planned if job.split in splits]
    claim_folder(out, MANIFEST_NAME, manifest, overwrite, "synthetic generator")
    planned_paths = [path for job in planned for path in job.paths]
    if overwrite:
        remove_unplanned(out, planned_paths)
    remove_temporaries(planned_paths)
    todo = [job for job in jobs if overwrite or not job.done]
    try:
        for folder in {path.parent for job in jobs for path in job.paths}:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(f"{out}: cannot create the data folders ({err.strerror})") from None
    bar = tqdm(total=len(todo), desc=f"synthetic {preset.name}", unit="volume", disable=not progress)
    run_jobs(write, [(job, seed, preset) for job in todo], workers, bar)
    bar.close()
    if file_format == "fastmri":
        write_annotation_csvs(out, planned)
    return todo
