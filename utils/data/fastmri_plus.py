"""fastMRI+ annotation CSVs: github.com/microsoft/fastmri-plus, ``Annotations/knee.csv`` and ``brain.csv``.

Header ``file,slice,study_level,x,y,width,height,label``, one row per box: ``file`` is the fastMRI file name
without ``.h5``, ``slice`` its 0-based slice index, ``x, y, width, height`` the box in fastMRI+'s space (the
320 x 320 ``reconstruction_rss`` flipped up-down; :mod:`utils.data.annotations` maps it to image_label's 384
space). Study-level rows (``study_level`` Yes, e.g. "Normal for age") have empty coordinates and no box:
they are skipped. A label keeps its text, less surrounding blanks (fastMRI+ writes ``Joint Effusion ``).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from utils.atomic import atomic_path
from utils.data.annotations import Box
from utils.errors import file_error

__all__ = ["COLUMNS", "AnnotatedFile", "read_fastmri_plus", "write_fastmri_plus"]

COLUMNS = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
_COORDINATES = ("x", "y", "width", "height")


@dataclass(frozen=True)
class AnnotatedFile:
    """The boxes of one fastMRI file, by slice index, in fastMRI+'s space; ``csv`` is where they came from."""

    csv: Path
    boxes: dict[int, list[Box]]


def _integer(row: dict[str, str], column: str, path: Path, line: int) -> int:
    text = row[column].strip()
    try:
        return int(text)
    except ValueError:
        raise file_error(path, f"line {line}: {column} = {text!r} is not an integer") from None


def _parse_row(row: dict[str, str], path: Path, line: int) -> tuple[str, int, Box] | None:
    """(file, slice, box) of one CSV row, by column name; None for a study-level row (no coordinates)."""
    name = row["file"].strip()
    empty = [column for column in _COORDINATES if not row[column].strip()]
    if len(empty) == len(_COORDINATES):
        return None
    if empty or not name:
        raise file_error(path, f"line {line}: {', '.join(empty) or 'file'} is empty; a box needs file, x, y, width and height")
    index, x, y, width, height = (_integer(row, column, path, line) for column in ("slice", *_COORDINATES))
    if index < 0 or width < 0 or height < 0:
        raise file_error(path, f"line {line}: slice, width and height must not be negative (slice {index}, width {width}, height {height})")
    return name, index, Box(x, y, width, height, row["label"].strip())


def _read_one(path: Path) -> dict[str, dict[int, list[Box]]]:
    """The boxes of one CSV by fastMRI file name (without .h5) and slice, in the order of its rows."""
    files: dict[str, dict[int, list[Box]]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise file_error(path, f"is not a fastMRI+ annotation CSV: its header lacks {', '.join(missing)} "
                                       f"(expected {','.join(COLUMNS)})")
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise file_error(path, f"line {reader.line_num} has {len(fields)} fields; the header has {len(header)}")
                parsed = _parse_row(dict(zip(header, fields)), path, reader.line_num)
                if parsed is not None:
                    name, index, box = parsed
                    files.setdefault(name, {}).setdefault(index, []).append(box)
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise file_error(path, f"cannot be read as a CSV file ({err})") from None
    return files


def read_fastmri_plus(paths: Sequence[str | os.PathLike]) -> dict[str, AnnotatedFile]:
    """The boxes of every fastMRI file annotated in the CSVs ``paths``, by file name without ``.h5``.

    A file annotated in two CSVs (or a CSV given twice) is refused: one line naming both.
    """
    annotated: dict[str, AnnotatedFile] = {}
    for path in map(Path, paths):
        for name, boxes in _read_one(path).items():
            if name in annotated:
                raise file_error(path, f"annotates {name}, which {annotated[name].csv} annotates too; give each CSV once")
            annotated[name] = AnnotatedFile(path, boxes)
    return annotated


def write_fastmri_plus(path: str | os.PathLike, files: Mapping[str, Mapping[int, Sequence[Box]]]) -> None:
    """Write a fastMRI+ CSV (atomically): one row per box, files by name, slices in increasing order.

    ``files``: fastMRI file name without ``.h5`` -> slice index -> boxes in fastMRI+'s space.
    """
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for name in sorted(files):
            for index, boxes in sorted(files[name].items()):
                for box in boxes:
                    writer.writerow([name, index, "No", box.x, box.y, box.width, box.height, box.label or ""])
