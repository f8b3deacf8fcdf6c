"""The uniform average of the weights of a run's last N epochs, as a checkpoint of this repository.

    python -m utils.tools.average_checkpoints RUN --last N --out OUT.pt

RUN is a run folder (``result/<exp_name>``) trained with ``training.keep_epoch_weights`` >= N, which keeps
``checkpoints/epoch{E}.pt`` of its last epochs (:mod:`utils.training.epoch_weights`). Every parameter of the
N newest files is averaged with equal weights (:func:`~utils.training.weight_average.uniform_average`); buffers
come from the newest. OUT holds the averaged weights, the model and run config of the newest file and an
``origin`` record of what was averaged (files, their SHA-256, epochs), so ``reconstruct_from_ckpt.py -c OUT``,
``training.init_from=OUT`` and the 2026 harness (as ``best_model.pt``) load it like any checkpoint.

Everything is checked before anything is written: a missing run, fewer than N epoch files, model configs that
differ between them and an existing OUT are each one line on stderr, exit status 2, and no file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from utils.errors import ArgumentParser, UserInputError, file_error, run_cli
from utils.gates.torch_floor import require_safe_torch
from utils.model.builder import build_model
from utils.model.checkpoint import load_checkpoint, save_checkpoint, weights_mismatch
from utils.training.epoch_weights import epoch_files
from utils.training.resume import same_model_config
from utils.training.weight_average import uniform_average

__all__ = ["average_checkpoints", "main"]


def _newest_epochs(run: Path, last: int) -> dict[int, Path]:
    """``{epoch: path}`` of the ``last`` newest epoch files of ``run``; a UserInputError if there are fewer."""
    if not run.is_dir():
        raise file_error(run, "run folder not found")
    files = epoch_files(run / "checkpoints")
    if len(files) < last:
        kept = ", ".join(path.name for path in files.values()) or "none"
        raise file_error(run / "checkpoints", f"holds the weights of {len(files)} epoch(s) ({kept}), --last {last} needs {last}; "
                                              f"train with training.keep_epoch_weights >= {last}")
    return dict(list(files.items())[-last:])


def _check_same_model(checkpoints: dict[Path, dict[str, Any]]) -> set[str]:
    """The parameter names of the model all ``checkpoints`` were trained with; a UserInputError if they differ."""
    (first_path, first), *others = checkpoints.items()
    for path, checkpoint in others:
        if not same_model_config(first["model_config"], checkpoint["model_config"]):
            raise file_error(path, f"has another model config than {first_path.name} ({checkpoint['model_config']} vs "
                                   f"{first['model_config']}); average epochs of one run")
    try:
        model = build_model(first["model_config"])
    except UserInputError as err:
        raise file_error(first_path, f"stores a model config that cannot be built: {err}") from None
    for path, checkpoint in checkpoints.items():
        mismatch = weights_mismatch(model.state_dict(), checkpoint["model"])
        if mismatch:
            raise file_error(path, f"weights do not fit the model config stored with them: {mismatch}")
    return {name for name, _ in model.named_parameters(remove_duplicate=False)}


def average_checkpoints(run: str | Path, last: int, out: str | Path) -> dict[str, Any]:
    """Average the weights of ``run``'s ``last`` newest epochs into ``out``; returns the written checkpoint."""
    run, out = Path(run), Path(out)
    if last < 1:
        raise UserInputError(f"--last must be at least 1, got {last}")
    if out.exists():
        raise file_error(out, "already exists; choose another --out (averaging never overwrites a file)")
    files = _newest_epochs(run, last)
    checkpoints = {path: load_checkpoint(path) for path in files.values()}
    parameters = _check_same_model(checkpoints)
    newest = checkpoints[files[max(files)]]
    origin = {
        "averaged": "uniform",
        "run": str(run.resolve()),
        "epochs": list(files),
        "files": [{"file": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()} for path in files.values()],
    }
    checkpoint = {
        "model": uniform_average([checkpoint["model"] for checkpoint in checkpoints.values()], parameters),
        "weights": "average",
        "model_config": newest["model_config"],
        "config": newest.get("config"),
        "epoch": newest.get("epoch"),
        "global_step": newest.get("global_step"),
        "origin": origin,
    }
    save_checkpoint(out, checkpoint)
    return checkpoint


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m utils.tools.average_checkpoints", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (result/<exp_name>), trained with training.keep_epoch_weights")
    parser.add_argument("--last", type=int, required=True, metavar="N", help="average the N newest epochs")
    parser.add_argument("--out", type=Path, required=True, help="the checkpoint to write (must not exist)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    checkpoint = average_checkpoints(args.run, args.last, args.out)
    epochs = ", ".join(str(epoch) for epoch in checkpoint["origin"]["epochs"])
    print(f"averaged the weights of epochs {epochs} of {args.run} -> {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
