"""Seeding and RNG state as plain data (tensors, ints, tuples), so it fits a ``weights_only`` checkpoint.

Data order and augmentation draw from ``(seed, epoch, ...)`` keyed generators of their own; the global
python, numpy and torch generators are seeded here and their states travel in every checkpoint, so whatever
else draws from them (dropout-free models draw nothing, but user code might) continues exactly on resume.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "configure_determinism", "capture_rng_state", "restore_rng_state", "seed_worker"]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(enabled: bool) -> None:
    """``training.deterministic``: deterministic CUDA kernels only (cuDNN, cuBLAS, scatter/index ops).

    The CPU path of this repository is deterministic as it is. On CUDA this disables cuDNN autotuning and
    non-deterministic algorithms (an op without a deterministic version then raises), at a speed cost that
    depends on the GPU. ``CUBLAS_WORKSPACE_CONFIG`` must be set before the first cuBLAS call.
    """
    torch.backends.cudnn.benchmark = False
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


def capture_rng_state() -> dict:
    """The global generators' states as tensors and plain Python data."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Undo :func:`capture_rng_state`."""
    random.setstate(tuple(item if not isinstance(item, list) else tuple(item) for item in state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: give each worker its own numpy/python seed (torch already differs)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
