"""Train the brain/knee classifier of the ``classifier`` router on ``image_input`` slices.

    python -m utils.tools.train_router --data ../Data --out ../result/router/anatomy_classifier.pt
    python -m utils.tools.train_router --data ../Data_demo --out ../result/router/demo.pt --steps 200

Reads the zero-filled ``image_input`` of every slice of ``<data>/train/image`` (both accelerations), trains
:class:`~utils.experts.classifier.AnatomyClassifier` (Adam, random horizontal and vertical flips,
seeded: the same run gives the same weights on the CPU) and reports its accuracy on ``<data>/val/image``
per slice and per volume (the router's decision: mean probability over the central slices). The leaderboard
is never read. The checkpoint holds the weights and that record.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from utils.data.h5 import open_h5, require_dataset
from utils.data.layout import list_volumes, parse_volume_name
from utils.errors import ArgumentParser, UserInputError, file_error, run_cli
from utils.experts.classifier import ANATOMY_CLASSES, AnatomyClassifier, classifier_input, predict_anatomy, save_classifier
from utils.experts.routing import ROUTE_SLICES
from utils.gates.torch_floor import require_safe_torch

__all__ = ["load_split", "train_classifier", "evaluate", "main"]


def load_split(image_dir: Path) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, np.ndarray]]]:
    """(inputs (N, 1, 96, 96), labels (N,), [(file name, central zero-filled slices), ...]) of one split."""
    inputs, labels, volumes = [], [], []
    for path in list_volumes(image_dir):
        label = ANATOMY_CLASSES.index(parse_volume_name(path).anatomy)
        try:
            with open_h5(path) as handle:
                images = require_dataset(handle, "image_input", ndim=3)[()]
        except OSError:
            raise file_error(path, "'image_input' cannot be read (truncated or corrupt?)") from None
        first = max(0, len(images) // 2 - ROUTE_SLICES // 2)
        volumes.append((path.name, images[first:first + ROUTE_SLICES]))
        inputs.append(classifier_input(images))
        labels.append(torch.full((len(images),), label, dtype=torch.long))
    return torch.cat(inputs), torch.cat(labels), volumes


def train_classifier(inputs: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int,
                     log=print) -> AnatomyClassifier:
    """``steps`` Adam steps on batches of (N, 1, 96, 96) inputs drawn in shuffled passes, each batch flipped at
    random; deterministic for a given seed on the CPU. A fixed number of steps, not of epochs, so a small data
    set (the tests' 8 slices) trains as long as a large one."""
    torch.manual_seed(seed)
    model = AnatomyClassifier().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    order, position, recent = torch.randperm(len(inputs), generator=generator), 0, []
    for step in range(steps):
        if position >= len(order):
            order, position = torch.randperm(len(inputs), generator=generator), 0
        index = order[position:position + batch_size]
        position += batch_size
        batch = inputs[index]
        flips = torch.rand(2, generator=generator)
        if flips[0] < 0.5:
            batch = batch.flip(-1)
        if flips[1] < 0.5:
            batch = batch.flip(-2)
        loss = F.cross_entropy(model(batch), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        recent.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log(f"step {step + 1}/{steps}: train loss {sum(recent) / len(recent):.4f}")
            recent = []
    return model.eval()


@torch.inference_mode()
def evaluate(model: AnatomyClassifier, inputs: torch.Tensor, labels: torch.Tensor, volumes: list[tuple[str, np.ndarray]]) -> dict:
    """Slice accuracy, and volume accuracy as the router decides (mean probability over the central slices)."""
    model.eval()
    slice_accuracy = float((model(inputs).argmax(dim=-1) == labels).float().mean())
    wrong = [name for name, images in volumes if predict_anatomy(model, images, torch.device("cpu"))[0] != parse_volume_name(name).anatomy]
    return {"val_slice_accuracy": slice_accuracy, "val_volume_accuracy": 1.0 - len(wrong) / len(volumes),
            "val_slices": len(labels), "val_volumes": len(volumes), "val_wrong_volumes": wrong}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(description="Train the anatomy classifier of the classifier router.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="../Data", help="data root holding train/image and val/image")
    parser.add_argument("--out", default="../result/router/anatomy_classifier.pt", help="checkpoint to write")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=430)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or not args.lr > 0:
        raise UserInputError(f"--steps and --batch_size must be >= 1 and --lr > 0, got {args.steps}, {args.batch_size}, {args.lr}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    data = Path(args.data)
    started = time.perf_counter()
    train_inputs, train_labels, _ = load_split(data / "train" / "image")
    val_inputs, val_labels, val_volumes = load_split(data / "val" / "image")
    counts = {name: int((train_labels == index).sum()) for index, name in enumerate(ANATOMY_CLASSES)}
    print(f"training the anatomy classifier on {len(train_labels)} slices of {data / 'train'} {counts}, "
          f"validating on {len(val_labels)} slices of {data / 'val'}")
    model = train_classifier(train_inputs, train_labels, args.steps, args.batch_size, args.lr, args.seed)
    record = evaluate(model, val_inputs, val_labels, val_volumes)
    record.update({"train_slices": len(train_labels), "steps": args.steps, "seed": args.seed, "data": str(data.resolve())})
    save_classifier(args.out, model, record)
    wrong = f" (wrong: {', '.join(record['val_wrong_volumes'])})" if record["val_wrong_volumes"] else ""
    print(f"validation accuracy: {record['val_slice_accuracy']:.4f} of {record['val_slices']} slices, "
          f"{record['val_volume_accuracy']:.4f} of {record['val_volumes']} volumes{wrong}")
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
