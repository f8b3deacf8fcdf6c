"""Batch samplers over a :class:`~utils.data.dataset.SliceDataset`.

Slices of different k-space shapes (coils, H, W) cannot share a batch, so training batches are grouped by
shape; with ``batch_size: 1`` this is a plain shuffled pass. Orders come from ``(seed, epoch)`` alone, never
from the global RNG, so a resumed run sees exactly the batches an uninterrupted one would. ``num_replicas`` and
``rank`` split an epoch into disjoint equal-length shards for distributed training.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ShapeGroupedBatchSampler", "volume_batches"]


class ShapeGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of example indices whose keys (k-space shapes) are equal.

    Args:
        keys: one hashable key per example (``SliceDataset.example_shapes()``).
        batch_size: examples per batch; the last batch of a shape group may be smaller.
        shuffle: shuffle within groups and the order of batches, from ``(seed, epoch)``.
        seed: base seed of the orders.
        num_replicas, rank: shard the batches; every rank gets ``ceil(batches / num_replicas)`` of them
            (the first batches repeat to fill the last round, so ranks never wait on each other).
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.groups: dict[Hashable, list[int]] = defaultdict(list)
        for index, key in enumerate(keys):
            self.groups[key].append(index)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Orders of the next pass depend on ``epoch``; its first ``start`` batches are skipped (a resume)."""
        self.epoch, self.start = epoch, start

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for indices in self.groups.values():
            indices = list(rng.permutation(indices)) if self.shuffle else list(indices)
            batches += [[int(i) for i in indices[start : start + self.batch_size]] for start in range(0, len(indices), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        per_rank = math.ceil(len(batches) / self.num_replicas)
        repeats = math.ceil(per_rank * self.num_replicas / len(batches)) if batches else 0
        padded = (batches * repeats)[: per_rank * self.num_replicas]  # cyclic: even 1 batch fills 4 ranks
        return iter(padded[self.rank :: self.num_replicas][self.start :])

    def __len__(self) -> int:
        """Batches left in this pass (per rank)."""
        return self.batches_per_epoch() - self.start

    def batches_per_epoch(self) -> int:
        """Batches in a whole pass (per rank)."""
        total = sum(math.ceil(len(indices) / self.batch_size) for indices in self.groups.values())
        return math.ceil(total / self.num_replicas)


def volume_batches(volume_of_example: Sequence[int], batch_size: int) -> list[list[int]]:
    """In-order batches that never cross a volume (validation and reconstruction write whole volumes)."""
    batches: list[list[int]] = []
    for index, volume in enumerate(volume_of_example):
        if batches and len(batches[-1]) < batch_size and volume_of_example[batches[-1][0]] == volume:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches
