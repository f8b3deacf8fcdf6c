"""What an anatomy renderer hands to the simulator: the object and where lesions may be drawn into it."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Phantom"]


class Phantom(NamedTuple):
    """One rendered volume on the full k-space image grid (H along the oversampled readout).

    volume: float32 (S, H, W) magnitude, maximum 1, background exactly 0.
    hosts: tissue name -> float32 (S, H, W) soft occupancy in [0, 1] of a tissue lesions may grow in.
    sites: tissue name -> bool (S, H, W): where a lesion of that tissue may be centred (inside the tissue,
        and where the renderer says such lesions occur, e.g. near the joint line for bone-marrow oedema).
    slice_mm: (S,) through-plane position of each slice in mm.
    level_scale: the volume holds the renderer's relative tissue levels times this factor (the volume was
        divided by its maximum), so a lesion of level L is painted at ``L * level_scale``.
    """

    volume: np.ndarray
    hosts: dict[str, np.ndarray]
    sites: dict[str, np.ndarray]
    slice_mm: np.ndarray
    level_scale: float
