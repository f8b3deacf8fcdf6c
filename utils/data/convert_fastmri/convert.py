"""Convert public fastMRI multicoil files into the challenge layout, one volume at a time.

Every source file is checked first (:mod:`.sources`), so a bad file stops the run before anything is
written. The plan (:mod:`.plan`) and the settings are recorded in ``ROOT/.convert_fastmri.json``; a rerun with
the same ones resumes (finished volumes are kept), other ones are refused unless ``overwrite``, and a folder
of .h5 files the converter did not write is never touched (:mod:`utils.data.output_folder`). Each volume is
streamed slice by slice through :func:`utils.data.challenge_writer.write_volume_files`, the writer of the
synthetic generator: the same images, attributes and atomic renames.

With fastMRI+ annotation CSVs (:mod:`utils.data.fastmri_plus`), each converted volume's boxes are moved into
the 384 space of image_label (:func:`utils.data.annotations.fastmri_plus_to_challenge`) and stored as its
image file's ``annotations``; the CSVs' names and SHA-256 join the manifest, and annotated files that are not
converted are reported (:func:`annotation_warnings`).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from utils.data.annotations import Box, fastmri_plus_to_challenge
from utils.data.challenge_writer import write_volume_files
from utils.data.convert_fastmri.plan import CHALLENGE_SPLIT, ConvertJob, MaskSpec, plan_conversion
from utils.data.convert_fastmri.sources import find_sources, kspace_slices, read_source
from utils.data.fastmri_plus import AnnotatedFile, read_fastmri_plus
from utils.data.h5 import open_h5
from utils.data.output_folder import claim_folder, remove_temporaries, remove_unplanned, run_jobs
from utils.errors import UserInputError

__all__ = ["MANIFEST_NAME", "DEFAULT_SEED", "ConversionReport", "convert", "annotation_warnings"]

MANIFEST_NAME = ".convert_fastmri.json"
DEFAULT_SEED = 430
_MAX_WARNINGS = 20  # annotated files not converted, named one per line; the rest are counted


@dataclass(frozen=True)
class ConversionReport:
    """What a run planned and what it wrote now (the rest was already done)."""

    planned: list[ConvertJob]
    written: list[ConvertJob]
    unconverted: dict[str, Path] = field(default_factory=dict)  # annotated file name -> its CSV, not converted

    def counts(self) -> dict[str, int]:
        counts = {"train": 0, "val": 0, "leaderboard": 0}
        for job in self.planned:
            counts[job.split] += 1
        return counts


def _convert_volume(args: tuple[ConvertJob, int, MaskSpec, dict[int, list[Box]]]) -> None:
    job, seed, mask_spec, boxes = args
    source = job.source
    mask = job.mask(seed, mask_spec)
    attrs = {"source": source.path.name}  # provenance, beside the challenge's max and norm
    if source.acquisition:
        attrs["acquisition"] = source.acquisition
    with open_h5(source.path) as handle:
        write_volume_files(
            job.kspace_path, job.image_path, kspace_slices(handle, source), source.shape, mask, job.acceleration,
            undersampled=job.split == "leaderboard", attrs=attrs, annotations=boxes,
        )


def _check_arguments(seed: int, limit: int | None, mask_spec: MaskSpec) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"--seed {seed}: the seed must be a non-negative integer")
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit {limit}: give a positive number of volumes")
    mask_spec.check()


def convert(
    sources: Sequence[str | Path],
    out: str | Path,
    seed: int = DEFAULT_SEED,
    split: Sequence[float] = CHALLENGE_SPLIT,
    anatomy: str | None = None,
    mask_spec: MaskSpec = MaskSpec(),
    workers: int = 1,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    annotations: Sequence[str | Path] = (),
) -> ConversionReport:
    """Convert the fastMRI files of ``sources`` (folders or files) into the challenge layout under ``out``.

    Args:
        seed: fixes the split, the acc4/acc8 assignment and the masks.
        split: train, val, leaderboard weights (per anatomy).
        anatomy: ``brain`` or ``knee`` for every file; None tells them apart by file name.
        limit: convert only the first ``limit`` files (in the order of ``sources``, each folder sorted by name).
        overwrite: replace a conversion made with other files or settings.
        annotations: fastMRI+ CSVs whose boxes go into the converted image files' ``annotations``.
    """
    out = Path(out)
    _check_arguments(seed, limit, mask_spec)
    files = find_sources(sources)[:limit]
    volumes = [read_source(path, anatomy) for path in files]
    planned = plan_conversion(out, volumes, seed, split)
    annotated = read_fastmri_plus(annotations)
    boxes = {job.source.path.name: _challenge_boxes(job, annotated) for job in planned}
    manifest = {
        "seed": seed,
        "split": [float(weight) for weight in split],
        "mask": asdict(mask_spec),
        "volumes": {job.source.path.name: str(job.kspace_path.relative_to(out)) for job in planned},
    }
    if annotations:  # absent otherwise: conversions made before annotations existed still resume
        manifest["annotations"] = [[Path(path).name, _sha256(Path(path))] for path in annotations]
    claim_folder(out, MANIFEST_NAME, manifest, overwrite, "fastMRI converter")
    planned_paths = [path for job in planned for path in job.paths]
    if overwrite:
        remove_unplanned(out, planned_paths)
    remove_temporaries(planned_paths)
    try:
        for folder in {path.parent for path in planned_paths}:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(f"{out}: cannot create the data folders ({err.strerror})") from None
    todo = [job for job in planned if overwrite or not job.done]
    bar = tqdm(total=len(todo), desc="fastMRI -> challenge", unit="volume", disable=not progress)
    run_jobs(_convert_volume, [(job, seed, mask_spec, boxes[job.source.path.name]) for job in todo], workers, bar)
    bar.close()
    converted = {job.source.path.stem for job in planned}
    unconverted = {name: file.csv for name, file in sorted(annotated.items()) if name not in converted}
    return ConversionReport(planned, todo, unconverted)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _challenge_boxes(job: ConvertJob, annotated: dict[str, AnnotatedFile]) -> dict[int, list[Box]]:
    """The fastMRI+ boxes of ``job``'s source in the 384 space of image_label; its slices checked."""
    file = annotated.get(job.source.path.stem)
    if file is None:
        return {}
    beyond = [index for index in file.boxes if index >= job.source.num_slices]
    if beyond:
        raise UserInputError(
            f"{file.csv}: boxes on slice {max(beyond)} of {job.source.path.stem}, but {job.source.path} has "
            f"{job.source.num_slices} slices (annotations of another version of the file?)"
        )
    return {index: [fastmri_plus_to_challenge(box) for box in slice_boxes] for index, slice_boxes in file.boxes.items()}


def annotation_warnings(report: ConversionReport) -> list[str]:
    """One line per annotated file whose boxes were not used because it is not converted (at most 20, then a count)."""
    lines = [f"{csv}: boxes of {name} not used: {name}.h5 is not among the converted files"
             for name, csv in list(report.unconverted.items())[:_MAX_WARNINGS]]
    if len(report.unconverted) > _MAX_WARNINGS:
        lines.append(f"... and the boxes of {len(report.unconverted) - _MAX_WARNINGS} more annotated files not converted")
    return lines
