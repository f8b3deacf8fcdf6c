"""``save_reconstructions`` with the signature of the challenge baseline's ``utils/common/utils.py``: the 2026
organisers' ``recon_eval.py`` writes every acceleration's reconstructions with it.

Each volume goes to ``out_dir/<file name>`` under the key ``reconstruction`` (plus ``target`` and ``input`` when
given), written to a temporary file and renamed, so an interrupted run never leaves a half-written file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from utils.atomic import atomic_path
from utils.errors import file_error

__all__ = ["save_reconstructions"]


def save_reconstructions(
    reconstructions: Mapping[str, np.ndarray], out_dir: str | Path, targets: Mapping[str, np.ndarray] | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``out_dir/<fname>`` for each ``fname -> (slices, H, W)`` array of ``reconstructions``."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(exist_ok=True, parents=True)
    except OSError as err:
        raise file_error(out_dir, f"cannot create the reconstruction folder ({err.strerror or err})") from None
    for fname, volume in reconstructions.items():
        path = out_dir / fname
        try:
            with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
                handle.create_dataset("reconstruction", data=np.asarray(volume))
                if targets is not None:
                    handle.create_dataset("target", data=np.asarray(targets[fname]))
                if inputs is not None:
                    handle.create_dataset("input", data=np.asarray(inputs[fname]))
        except OSError as err:
            raise file_error(path, f"cannot write the reconstruction ({err.strerror or err})") from None
