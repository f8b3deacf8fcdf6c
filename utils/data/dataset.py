"""One example per slice over the challenge's h5 files.

``SliceDataset(split_dir)`` pairs ``split_dir/kspace/X.h5`` with ``split_dir/image/X.h5`` (train and val;
several split folders, e.g. train and val for a final-submission run, are read as one dataset);
``SliceDataset(leaderboard/acc4, kspace_only=True)`` reads ``kspace/`` alone. With
``accelerations=(4, 8)`` every slice is an example once per acceleration (mask duplication): at its file's
acceleration with the file's mask, at the other with a challenge-style equispaced mask. Everything that can be checked
from metadata is checked at construction (names pair up, keys exist, slice counts agree, the mask length is
the k-space width), so a bad file fails at start-up with its name, not hours into a run.

h5 files are opened lazily, at most once per worker process (a small LRU of open handles), never once per
item; a DataLoader worker that inherits the parent's handles through fork drops them and opens its own.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
from torch.utils.data import Dataset

from utils.data.annotations import Box, read_annotations
from utils.data.h5 import (
    ImageInfo,
    KspaceInfo,
    open_h5,
    read_image_info,
    read_kspace_info,
    read_slice,
    require_finite,
)
from utils.data.layout import VolumeName, list_volumes, parse_volume_name
from utils.data.masks import equispaced_mask
from utils.data.transforms import ApplyFileMask, RawSlice, Sample
from utils.errors import UserInputError, file_error

__all__ = ["Volume", "SliceDataset"]


@dataclass(frozen=True)
class Volume:
    """One k-space file (and its image file), with the facts read at construction."""

    kspace_path: Path
    image_path: Path | None
    name: VolumeName
    kspace: KspaceInfo
    image: ImageInfo | None
    boxes: dict[int, list[Box]] = field(default_factory=dict)  # the image file's lesion boxes by slice

    @property
    def kspace_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every slice, the key for grouping slices into equal-shape batches."""
        return (self.kspace.num_coils, self.kspace.height, self.kspace.width)


class _HandleCache:
    """At most ``capacity`` open h5 files per process, least recently used closed first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._pid: int | None = None
        self._handles: OrderedDict[Path, h5py.File] = OrderedDict()

    def get(self, path: Path) -> h5py.File:
        if self._pid != os.getpid():  # a forked worker: the parent's handles are not ours to use or close
            self._handles = OrderedDict()
            self._pid = os.getpid()
        handle = self._handles.get(path)
        if handle is None:
            handle = open_h5(path)
            self._handles[path] = handle
            if len(self._handles) > self.capacity:
                self._handles.popitem(last=False)[1].close()
        else:
            self._handles.move_to_end(path)
        return handle

    def close(self) -> None:
        """Close this process's handles (reopened lazily if used again)."""
        if self._pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles = OrderedDict()

    def __getstate__(self) -> dict:  # spawned workers start with no handles
        return {"capacity": self.capacity, "_pid": None, "_handles": OrderedDict()}


def _pair_files(split_dir: Path) -> list[tuple[Path, Path]]:
    """(kspace, image) pairs with identical names; a file without its counterpart is an error."""
    kspace_files = {p.name: p for p in list_volumes(split_dir / "kspace")}
    image_files = {p.name: p for p in list_volumes(split_dir / "image")}
    for have, lack, names, others in (
        ("kspace", "image", kspace_files, image_files),
        ("image", "kspace", image_files, kspace_files),
    ):
        unpaired = sorted(set(names) - set(others))
        if unpaired:
            more = f" (and {len(unpaired) - 1} more)" if len(unpaired) > 1 else ""
            raise file_error(split_dir / have / unpaired[0], f"has no matching file in {split_dir / lack}{more}")
    return [(kspace_files[name], image_files[name]) for name in kspace_files]


def _check_volume(kspace_path: Path, image_path: Path | None) -> Volume:
    name = parse_volume_name(kspace_path)
    kspace = read_kspace_info(kspace_path)
    image, boxes = None, {}
    if image_path is not None:
        image = read_image_info(image_path)
        if image.num_slices != kspace.num_slices:
            raise file_error(
                image_path, f"has {image.num_slices} slices but {kspace_path.name} has {kspace.num_slices}"
            )
        boxes = read_annotations(image_path)
    return Volume(kspace_path, image_path, name, kspace, image, boxes)


class SliceDataset(Dataset):
    """Slices of a train/val split (k-space + image pairs) or of a leaderboard folder (k-space only).

    Args:
        root: a split folder holding ``kspace/`` and ``image/`` (e.g. ``Data/train``), or a list of them, or,
            with ``kspace_only``, a folder holding ``kspace/`` (e.g. ``Data/leaderboard/acc4``).
        transform: ``(RawSlice, rng) -> Sample``; default applies the mask stored in the file. ``rng`` is a
            numpy Generator seeded by ``(seed, epoch, index)``: random augmentations drawn from it are the same
            in any worker process, for any number of workers, and after a resume.
        kspace_only: read k-space alone (targets are empty), as for leaderboard reconstruction.
        max_open_files: open h5 handles kept per process.
        seed: base seed of the per-example generators (see :meth:`set_epoch`).
        accelerations: mask duplication, e.g. ``(4, 8)``: each slice once per acceleration (training only).
        keep_volume: ``VolumeName -> bool``, keeps only some files (an expert's subset,
            :mod:`utils.data.subset`, or the volumes routed to one expert); keeping none is a UserInputError.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        transform: Callable[[RawSlice, np.random.Generator], Sample] | None = None,
        kspace_only: bool = False,
        max_open_files: int = 64,
        seed: int = 0,
        accelerations: Sequence[int] | None = None,
        keep_volume: Callable[[VolumeName], bool] | None = None,
    ):
        self.roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(path) for path in root]
        self.seed, self.epoch = seed, 0
        self.transform = transform or ApplyFileMask()
        self.kspace_only = kspace_only
        pairs = []
        for split_dir in self.roots:
            if kspace_only:
                pairs += [(path, None) for path in list_volumes(split_dir / "kspace")]
            else:
                pairs += _pair_files(split_dir)
        if keep_volume is not None:
            pairs = [pair for pair in pairs if keep_volume(parse_volume_name(pair[0]))]
            if not pairs:
                folders = ", ".join(str(split_dir) for split_dir in self.roots)
                raise UserInputError(f"{folders}: no file is left by the selection ({keep_volume})")
        self.volumes = [_check_volume(kspace_path, image_path) for kspace_path, image_path in pairs]
        # (volume, slice, acceleration of the mask to use; None: the file's)
        self.examples: list[tuple[int, int, int | None]] = [
            (volume_idx, slice_idx, acceleration)
            for volume_idx, volume in enumerate(self.volumes)
            for slice_idx in range(volume.kspace.num_slices)
            for acceleration in (accelerations or [None])
        ]
        self._handles = _HandleCache(max_open_files)

    def __len__(self) -> int:
        return len(self.examples)

    def example_shapes(self) -> list[tuple[int, int, int]]:
        """k-space shape (C, H, W) of every example, for grouping equal shapes into batches."""
        return [self.volumes[volume_idx].kspace_shape for volume_idx, _, _ in self.examples]

    def example_volumes(self) -> list[int]:
        """Volume index of every example, for batches that never cross a volume."""
        return [volume_idx for volume_idx, _, _ in self.examples]

    def read_raw(self, index: int) -> RawSlice:
        """The stored arrays of example ``index``; NaN or Inf k-space or targets raise UserInputError naming the file
        and the slice, before any training step uses them."""
        volume_idx, slice_idx, acceleration = self.examples[index]
        volume = self.volumes[volume_idx]
        kspace_file = self._handles.get(volume.kspace_path)
        kspace = read_slice(kspace_file["kspace"], slice_idx)
        mask = read_slice(kspace_file["mask"]).astype(np.float32)
        require_finite(volume.kspace_path, "kspace", kspace, slice_idx)
        target, max_value = None, float("nan")
        if volume.image_path is not None:
            target = read_slice(self._handles.get(volume.image_path)["image_label"], slice_idx)
            require_finite(volume.image_path, "image_label", target, slice_idx)
            max_value = volume.image.max_value
        if acceleration is None or acceleration == volume.name.acceleration:
            acceleration = volume.name.acceleration
        else:  # the duplicate at the other acceleration: the challenge's mask shape (SPEC §1)
            mask = equispaced_mask(mask.shape[-1], acceleration)
        return RawSlice(
            kspace=kspace,
            mask=mask,
            target=target,
            max_value=max_value,
            fname=volume.kspace_path.name,
            slice_idx=slice_idx,
            anatomy=volume.name.anatomy,
            acceleration=acceleration,
            boxes=tuple(volume.boxes.get(slice_idx, ())),
        )

    def set_epoch(self, epoch: int) -> None:
        """Random draws of the transform depend on ``(seed, epoch, index)`` (set before creating the loader
        iterator); a transform with a ``set_epoch`` of its own (an augmentation schedule) is told too."""
        self.epoch = epoch
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(epoch)

    def __getitem__(self, index: int) -> Sample:
        return self.transform(self.read_raw(index), np.random.default_rng([self.seed, self.epoch, index]))

    def close(self) -> None:
        """Close the h5 files this process opened."""
        self._handles.close()
