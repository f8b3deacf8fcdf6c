"""Write a whole synthetic dataset in the challenge layout (SPEC §1).

Jobs are independent files, each seeded by (seed, split, anatomy, acceleration, index), so the output is the
same for any number of worker processes. Every file is written to a temporary file and renamed, and a volume
whose two files both exist is skipped, so an interrupted run resumes where it stopped. A manifest records the
preset and seed: asking for a different one in a non-empty folder is refused unless ``overwrite``.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from utils.data.layout import ACCELERATIONS, ANATOMIES, leaderboard_filename, volume_filename
from utils.data.synthetic.presets import Preset, get_preset
from utils.data.synthetic.simulate import VolumeRecipe, draw_recipe, write_volume
from utils.errors import UserInputError

__all__ = ["DEFAULT_SEED", "MANIFEST_NAME", "Job", "plan_jobs", "estimate_bytes", "generate"]

DEFAULT_SEED = 430
MANIFEST_NAME = ".synthetic.json"
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


def estimate_bytes(preset: Preset, seed: int = DEFAULT_SEED) -> tuple[int, int]:
    """(k-space bytes, image bytes) the preset writes, from the drawn recipes (exact up to h5 overhead)."""
    _check_seed(seed)
    recipes = [job.recipe(seed, preset)[1] for job in plan_jobs(Path("."), preset)]
    return sum(r.kspace_bytes for r in recipes), sum(r.image_bytes for r in recipes)


def _run_job(args: tuple[Job, int, Preset]) -> str:
    job, seed, preset = args
    # One thread per process: identical numbers for any worker count, and no threaded-BLAS stalls
    # (OpenBLAS's threaded path ran GRAPPA's small least-squares fits ~70x slower on a busy 2-core machine).
    torch.set_num_threads(1)
    with threadpool_limits(1):
        rng, recipe = job.recipe(seed, preset)
        write_volume(rng, recipe, job.kspace_path, job.image_path)
    return job.kspace_path.name


def _check_manifest(out: Path, manifest: dict, overwrite: bool) -> None:
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
        if existing != manifest and not overwrite:
            raise UserInputError(
                f"{out}: already holds synthetic data made with {existing}; pass --overwrite to replace it with {manifest}"
            )
    elif any(out.glob("*/**/*.h5")):  # the real challenge data has the same names: never overwrite it
        raise UserInputError(f"{out}: already holds .h5 files that this generator did not write; choose another --out")


def _remove_unplanned(out: Path, planned: list[Job]) -> None:
    """On --overwrite, drop volumes of the previous preset that this one does not write (no mixed datasets)."""
    keep = {job.kspace_path for job in planned} | {job.image_path for job in planned}
    for path in out.glob("*/**/*.h5"):
        if path not in keep:
            path.unlink()


def generate(
    out: str | Path,
    preset_name: str = "demo",
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    splits: tuple[str, ...] = ("train", "val", "leaderboard"),
) -> list[Job]:
    """Write (or complete) the ``splits`` of preset ``preset_name`` under ``out``; returns the jobs written."""
    out = Path(out)
    try:
        preset = get_preset(preset_name)
    except ValueError as err:
        raise UserInputError(str(err)) from None
    _check_seed(seed)
    manifest = {"preset": preset.name, "seed": seed}
    _check_manifest(out, manifest, overwrite)
    planned = plan_jobs(out, preset)
    if overwrite:
        _remove_unplanned(out, planned)
    jobs = [job for job in planned if job.split in splits]
    todo = [job for job in jobs if overwrite or not job.done]
    try:
        for folder in {job.kspace_path.parent for job in jobs} | {job.image_path.parent for job in jobs}:
            folder.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_NAME).write_text(json.dumps(manifest) + "\n")
    except OSError as err:
        raise UserInputError(f"{out}: cannot create the data folders ({err.strerror})") from None
    bar = tqdm(total=len(todo), desc=f"synthetic {preset.name}", unit="volume", disable=not progress)
    arguments = [(job, seed, preset) for job in todo]
    if workers <= 1:
        threads = torch.get_num_threads()
        try:
            for argument in arguments:
                _run_job(argument)
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        context = multiprocessing.get_context("spawn")  # fork after torch has run threads is unsafe
        with context.Pool(min(workers, os.cpu_count() or 1)) as pool:
            for _ in pool.imap_unordered(_run_job, arguments):
                bar.update()
    bar.close()
    return todo
