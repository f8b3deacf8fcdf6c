"""Ensembles: several loaded checkpoints that reconstruct a slice together, their outputs averaged uniformly.

An expert manifest route may name a list of checkpoints (``experts: {all: [a.pt, b.pt]}``, docs/experts.md);
:func:`~utils.experts.serve.load_expert_set` loads each file once and builds an :class:`Ensemble` of the list.
The mean is over the list's entries: a checkpoint named twice runs once and weighs twice.

Every member keeps the input transform it was trained with (its coil compression). Members whose transforms
agree share one input; otherwise the ensemble's transform gives a :class:`~utils.data.transforms.Sample` whose
``masked_kspace`` is a tuple, one ``(C_i, H, W, 2)`` tensor per distinct input (the DataLoader collates it
into a list of ``(B, C_i, H, W, 2)``). :func:`model_inputs` moves either form to the device. All members run
inside one call, so :class:`~utils.inference.reconstruct.ModelClock` counts them all as the slice's model time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

from utils.data.transforms import RawSlice, Sample
from utils.errors import UserInputError
from utils.inference.load import Reconstructor
from utils.mri.crop import CHALLENGE_SHAPE

__all__ = ["Ensemble", "EnsembleTransform", "ModelInputs", "model_inputs"]

# masked k-space (B, C, H, W, 2), or one such tensor per distinct input of an ensemble
ModelInputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def model_inputs(masked_kspace: ModelInputs, device: torch.device, add_batch_dim: bool = False, non_blocking: bool = False) -> ModelInputs:
    """``masked_kspace`` (a tensor or a sequence of them) on ``device``, with a leading batch axis if asked."""
    def move(tensor: torch.Tensor) -> torch.Tensor:
        return (tensor.unsqueeze(0) if add_batch_dim else tensor).to(device, non_blocking=non_blocking)

    if isinstance(masked_kspace, torch.Tensor):
        return move(masked_kspace)
    return tuple(move(tensor) for tensor in masked_kspace)


class EnsembleTransform:
    """A :class:`RawSlice` -> one :class:`Sample` holding every distinct input (one transform per input)."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, raw: RawSlice, rng: np.random.Generator | None = None) -> Sample:
        samples = [transform(raw, rng) for transform in self.transforms]
        if len(samples) == 1:
            return samples[0]
        return samples[0]._replace(masked_kspace=tuple(sample.masked_kspace for sample in samples))


class Ensemble(nn.Module):
    """The uniform mean of its members' ``(B, 384, 384)`` outputs; ``members`` may repeat a loaded checkpoint.

    Called like a :class:`Reconstructor`: masked k-space (see :data:`ModelInputs`), mask ``(B, 1, 1, W, 1)``.
    """

    def __init__(self, members: Sequence[Reconstructor]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        distinct = list({id(member): member for member in members}.values())
        self.named = [member.checkpoint_path for member in members]  # as listed, repeats included
        self.members = nn.ModuleList(distinct)
        self.counts = [sum(other is member for other in members) for member in distinct]
        keys = list(dict.fromkeys(member.input_key for member in distinct))
        self.input_of = [keys.index(member.input_key) for member in distinct]
        self.transform = EnsembleTransform([next(m for m in distinct if m.input_key == key).transform for key in keys])

    @property
    def checkpoint_paths(self) -> list[Path]:
        """The checkpoints as the manifest lists them."""
        return list(self.named)

    def sample(self, raw: RawSlice) -> Sample:
        return self.transform(raw)

    def forward(self, masked_kspace: ModelInputs, mask: torch.Tensor) -> torch.Tensor:
        inputs = (masked_kspace,) if isinstance(masked_kspace, torch.Tensor) else tuple(masked_kspace)
        total = None
        for member, count, index in zip(self.members, self.counts, self.input_of):
            output = member(inputs[index], mask)
            expected = (inputs[index].shape[0], *CHALLENGE_SHAPE)
            if tuple(output.shape) != expected:
                raise UserInputError(f"{member.checkpoint_path}: gives outputs of shape {tuple(output.shape)}, not {expected}; "
                                     "an ensemble averages (B, 384, 384) reconstructions")
            total = count * output if total is None else total + count * output
        return total / sum(self.counts)

    def describe(self) -> str:
        """``ensemble of 2: a.pt, b.pt`` (as listed)."""
        return f"ensemble of {len(self.named)}: {', '.join(map(str, self.named))}"
