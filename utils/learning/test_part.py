"""The 2026 harness contract: what the organisers' fixed ``recon_eval.py`` imports to reconstruct with our model.

The harness loads the model once (``load_model``), then for every leaderboard volume calls ``prep_volume``
(untimed: read the file onto the host), ``recon_slice`` on its first 5 slices untimed (warm-up), then on every
slice at batch 1, timed with the device synchronised, and scores SSIM_full and SSIM_bbox. ``INPUT_KIND =
"kspace"`` documents that the model reads the k-space file (the harness hands ``prep_volume`` both files and
never reads ``INPUT_KIND``; leaderboard image files may not be used at inference).

``load_model(args, device)`` reads ``args.exp_dir / "best_model.pt"`` (the harness sets ``exp_dir`` to
``../result/<name>/checkpoints``, this repository's layout), any checkpoint of this repository or imported
into it; where there is none, the expert manifest ``experts.yaml`` (docs/experts.md) in ``exp_dir`` or its
parent (``recon_eval.py -n experts4`` for ``../result/experts4/experts.yaml``): each volume is then routed at
its first ``recon_slice`` call (timed, as it should be) and all its slices go to that expert. Each slice gets exactly the input
``reconstruct_from_ckpt.py`` gives it (the file's mask, the run's coil compression;
:mod:`utils.inference.load`), so both paths produce the same reconstructions.

Ensembles and test-time augmentation come from the manifest (``experts: {all: [a.pt, b.pt]}``, ``tta: flip``;
docs/experts.md), never from an environment variable: the organisers run the harness in their environment with
their own flags, and the manifest is a file of the submitted result folder that ``reconstruct_from_ckpt.py -c``
reads too, so both paths serve the same thing. A single checkpoint with ``tta: flip`` is a one-route manifest
(``experts: {all: ../<run>/checkpoints/best_model.pt}``) in a folder of its own; a ``best_model.pt`` in
``exp_dir`` is served as it is, and a manifest beside it is ignored with a warning.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.data.h5 import open_h5, read_kspace_info, read_slice, require_finite
from utils.data.layout import volume_labels
from utils.data.transforms import RawSlice
from utils.errors import file_error
from utils.experts.manifest import EXPERT_MANIFEST_NAME
from utils.experts.routing import ROUTE_SLICES, make_evidence
from utils.experts.serve import ExpertSet, load_expert_set
from utils.inference.ensemble import Ensemble, model_inputs
from utils.inference.load import Reconstructor, load_reconstructor

__all__ = ["INPUT_KIND", "load_model", "prep_volume", "recon_slice"]

INPUT_KIND = "kspace"
CHECKPOINT_NAME = "best_model.pt"
log = logging.getLogger("routing")  # routing decisions and what load_model serves


def load_model(args: Any, device: torch.device | str) -> Reconstructor | ExpertSet:
    """The model of ``args.exp_dir / best_model.pt`` on ``device``, in eval mode; where there is none, the expert
    set of ``experts.yaml`` in ``args.exp_dir`` or in its parent (``recon_eval.py -n <set>`` sets ``exp_dir`` to
    ``../result/<set>/checkpoints``, and ``train_experts`` writes ``../result/<set>/experts.yaml``)."""
    exp_dir = Path(args.exp_dir)
    checkpoint = exp_dir / CHECKPOINT_NAME
    manifests = [path for path in (exp_dir / EXPERT_MANIFEST_NAME, exp_dir.parent / EXPERT_MANIFEST_NAME) if path.is_file()]
    if not checkpoint.exists() and manifests:
        return load_expert_set(manifests[0], torch.device(device))
    if manifests:  # never silent: a tta or an ensemble written there does not apply
        log.warning("%s is served as it is; %s beside it is ignored (put a manifest in a folder without best_model.pt)",
                    checkpoint, manifests[0])
    return load_reconstructor(checkpoint, torch.device(device))


def prep_volume(image_path: str | Path | None, kspace_path: str | Path | None, device: torch.device | str) -> dict[str, Any]:
    """One volume's k-space ``(S, C, H, W)`` complex64 and mask ``(W,)`` on the host, checked; no model work.

    The harness passes the image file (unused here: the model reconstructs from k-space, and leaderboard image
    files may not be read at inference) and the k-space file of the same name, or None where it has none. Any
    file name is accepted; anatomy and acceleration are labels for the log only.
    """
    if kspace_path is None:
        raise file_error(image_path or "?", "has no k-space file of the same name in the kspace/ folder beside image/; "
                                            "this model reconstructs from k-space")
    kspace_path = Path(kspace_path)
    info = read_kspace_info(kspace_path)  # keys, dtype, sizes, mask: one-line errors naming the file
    with open_h5(kspace_path) as handle:
        kspace = read_slice(handle["kspace"])
        mask = read_slice(handle["mask"]).astype(np.float32)
    require_finite(kspace_path, "kspace", kspace)
    anatomy, acceleration = volume_labels(kspace_path)
    return {
        "kspace": kspace,
        "mask": mask,
        "device": torch.device(device),
        "num_slices": info.num_slices,
        "fname": kspace_path.name,
        "anatomy": anatomy,
        "acceleration": acceleration,
    }


def _expert_for(experts: ExpertSet, ctx: dict[str, Any]) -> Reconstructor | Ensemble:
    """The volume's expert, routed once from its central slices (the same evidence reconstruct_from_ckpt uses)."""
    if "route" not in ctx:
        route = next(iter(experts.experts))
        if experts.needs_routing:
            first = max(0, ctx["num_slices"] // 2 - ROUTE_SLICES // 2)
            decision = experts.router.route(make_evidence(ctx["fname"], ctx["kspace"][first:first + ROUTE_SLICES], ctx["mask"]))
            route = experts.manifest.route_for(decision.anatomy, decision.acceleration)
            for reason in experts.unsure(decision):  # never silent
                log.warning("%s -> %s, UNSURE: %s", ctx["fname"], route, reason)
        ctx["route"] = route
    return experts.experts[ctx["route"]]


@torch.inference_mode()
def recon_slice(model: Reconstructor | ExpertSet, ctx: dict[str, Any], s: int) -> torch.Tensor:
    """Slice ``s`` of the volume in ``ctx`` -> its ``(384, 384)`` float32 reconstruction on ``ctx["device"]``."""
    if isinstance(model, ExpertSet):
        model = _expert_for(model, ctx)
    raw = RawSlice(
        kspace=ctx["kspace"][s],
        mask=ctx["mask"],
        target=None,
        max_value=float("nan"),
        fname=ctx["fname"],
        slice_idx=s,
        anatomy=ctx["anatomy"],
        acceleration=ctx["acceleration"],
    )
    sample = model.sample(raw)
    device = ctx["device"]
    masked_kspace = model_inputs(sample.masked_kspace, device, add_batch_dim=True)  # an ensemble's may be several
    mask = sample.mask.unsqueeze(0).to(device)
    return model(masked_kspace, mask)[0]
