"""A small CNN that tells brain from knee in zero-filled images, for the ``classifier`` router.

Input: zero-filled RSS slices ``(N, 384, 384)`` (``image_input`` of the challenge files), each divided by its
own 99th percentile and clipped to [0, 2], so the network sees shape, not the scanner's intensity scale (the
rule router uses the intensity), then averaged over 4x4 pixels to ``(N, 1, 96, 96)``. Four
conv3x3-ReLU-maxpool stages (no normalisation layer: the input is normalised, and training and inference
then compute the same function), global average pooling and a linear layer give two logits
(:data:`ANATOMY_CLASSES`). About 16 k parameters: training on the CPU takes seconds to minutes
(``python -m utils.tools.train_router``).

Checkpoints hold tensors and plain data only (``format``, ``model``, ``channels``, ``classes`` and the
training record) and load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from utils.atomic import atomic_path
from utils.errors import file_error
from utils.gates.torch_file import load_torch_file

__all__ = ["ANATOMY_CLASSES", "CLASSIFIER_FORMAT", "AnatomyClassifier", "classifier_input", "predict_anatomy",
           "save_classifier", "load_classifier"]

ANATOMY_CLASSES = ("brain", "knee")
CLASSIFIER_FORMAT = "anatomy-classifier/1"
DOWNSAMPLE = 4


def classifier_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 384, 384) zero-filled images -> (N, 1, 96, 96) float32: per-slice 99th-percentile scaling, clip, 4x4 mean."""
    images = torch.as_tensor(np.asarray(images, dtype=np.float32) if isinstance(images, np.ndarray) else images).float()
    scale = torch.quantile(images.flatten(1), 0.99, dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = (images / scale.view(-1, 1, 1)).clamp(0.0, 2.0)
    return F.avg_pool2d(scaled.unsqueeze(1), DOWNSAMPLE)


class AnatomyClassifier(nn.Module):
    """(N, 1, 96, 96) -> (N, 2) logits for :data:`ANATOMY_CLASSES`."""

    def __init__(self, channels: Sequence[int] = (8, 16, 32, 32)):
        super().__init__()
        self.channels = [int(c) for c in channels]
        layers, previous = [], 1
        for width in self.channels:
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(previous, len(ANATOMY_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))


@torch.inference_mode()
def predict_anatomy(model: AnatomyClassifier, zero_filled: np.ndarray, device: torch.device) -> tuple[str, float]:
    """The anatomy of a volume from some of its zero-filled slices: mean class probability over the slices."""
    model.eval()
    probabilities = model(classifier_input(zero_filled).to(device)).softmax(dim=-1).mean(dim=0)
    index = int(probabilities.argmax())
    return ANATOMY_CLASSES[index], float(probabilities[index])


def save_classifier(path: str | Path, model: AnatomyClassifier, record: dict[str, Any]) -> None:
    """Write the classifier and its training ``record`` (plain data) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"format": CLASSIFIER_FORMAT, "model": model.state_dict(), "channels": model.channels,
                    "classes": list(ANATOMY_CLASSES), **record}, temporary)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[AnatomyClassifier, dict[str, Any]]:
    """(classifier in eval mode on ``device``, its checkpoint's plain data); a foreign file names itself."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, "classifier checkpoint not found")
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CLASSIFIER_FORMAT:
        raise file_error(path, f"is not an anatomy classifier checkpoint (expected format '{CLASSIFIER_FORMAT}'; "
                               "make one with python -m utils.tools.train_router)")
    classes = checkpoint.get("classes")
    if not isinstance(classes, (list, tuple)) or list(classes) != list(ANATOMY_CLASSES):
        raise file_error(path, f"classifies {checkpoint.get('classes')}, expected {list(ANATOMY_CLASSES)}")
    channels = checkpoint.get("channels")
    if not (isinstance(channels, list) and 0 < len(channels) <= 8 and all(type(c) is int and 0 < c <= 1024 for c in channels)):
        raise file_error(path, f"stores channels {channels!r}, expected a list of up to 8 positive integers")
    if not isinstance(checkpoint.get("model"), dict):
        raise file_error(path, "holds no classifier state dict under 'model'")
    model = AnatomyClassifier(checkpoint["channels"])
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, AttributeError, KeyError):
        raise file_error(path, "weights do not fit the classifier's stored channels") from None
    return model.to(device).eval(), {key: value for key, value in checkpoint.items() if key != "model"}
