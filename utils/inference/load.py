"""A checkpoint ready to reconstruct: its network and the input transform it was trained with.

Both inference paths load checkpoints through :func:`load_reconstructor`: ``reconstruct_from_ckpt.py`` (whole
folders, batched, sharded under torchrun) and the 2026 harness contract (``utils/learning/test_part.py``, one
slice at a time). The transform is the one validation used in training: the file's mask, then the run's coil
compression (``compressor`` in the checkpoint's config), so a slice gets the same input wherever it is
reconstructed. ``tta="flip"`` wraps the network in flip test-time augmentation (:mod:`utils.inference.tta`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.data.compression import build_compressor
from utils.data.transforms import ApplyFileMask, RawSlice, Sample
from utils.inference.tta import FlipTTA, with_tta
from utils.model.checkpoint import load_checkpoint, model_from_checkpoint

__all__ = ["Reconstructor", "load_reconstructor"]


class Reconstructor(nn.Module):
    """``network`` plus ``transform`` (a :class:`RawSlice` -> model-ready :class:`Sample`) and where it came from.

    Calling it is calling the network: masked k-space ``(B, C, H, W, 2)``, mask ``(B, 1, 1, W, 1)`` ->
    ``(B, 384, 384)``.
    """

    def __init__(self, network: nn.Module, transform: ApplyFileMask, checkpoint_path: Path, epoch: Any, config: dict | None = None):
        super().__init__()
        self.network = network
        self.transform = transform
        self.checkpoint_path = checkpoint_path
        self.epoch = epoch
        self.config = config or {}  # the run config stored in the checkpoint (plain data; {} for imported files)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.network(masked_kspace, mask)

    def sample(self, raw: RawSlice) -> Sample:
        """The model-ready input of one stored slice."""
        return self.transform(raw)

    @property
    def tta(self) -> str:
        """The test-time augmentation of this reconstructor: ``flip`` or ``none``."""
        return "flip" if isinstance(self.network, FlipTTA) else "none"

    @property
    def input_key(self) -> str:
        """Equal for two reconstructors whose transforms give the same input (the same coil compression)."""
        node = self.config.get("compressor")
        if not node or node.get("method") in (None, "none"):
            return "no compression"
        return json.dumps(node, sort_keys=True, default=str)


def load_reconstructor(path: str | Path, device: torch.device, tta: str = "none") -> Reconstructor:
    """Load a checkpoint of this repository (or an imported one) onto ``device``, in eval mode, with test-time
    augmentation ``tta`` (``none`` or ``flip``).

    Errors a user can cause (missing file, foreign checkpoint, unbuildable config) are one-line
    UserInputErrors naming the file.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    compressor = build_compressor((checkpoint.get("config") or {}).get("compressor"))  # as in training
    network = with_tta(model_from_checkpoint(checkpoint, path), tta)
    reconstructor = Reconstructor(network, ApplyFileMask(compressor), path, checkpoint.get("epoch"), checkpoint.get("config"))
    return reconstructor.to(device).eval()
