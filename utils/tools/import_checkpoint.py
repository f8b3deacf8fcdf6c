"""Turn a reference implementation's checkpoint into a checkpoint of this repository.

    python -m utils.tools.import_checkpoint SRC --out OUT.pt [--layout fastmri|geekseek|promptmr] [--set KEY=VALUE ...]

SRC may be
- a fastMRI ``VarNet`` state dict, e.g. the published ``knee_leaderboard_state_dict.pt`` /
  ``brain_leaderboard_state_dict.pt`` (12 cascades, chans 18, pools 4, sensitivity chans 8, pools 4);
- a checkpoint of the 2025 entry (``sawo0150/2025_GeekSeek`` branch ``final_train``): a dict with ``model``
  (the state dict), ``optimizer``, ``epoch`` and ``args``, a pickled ``SimpleNamespace`` of its config;
- a PromptMR+ state dict of the 2025 winner (``sMartify-fastmri/2025_final``, ``PromptMR``), or its training
  checkpoint (``model``, ``optimizer``, ``scheduler``, ``epoch``, ``best_val_loss``, ``exp_dir`` and ``args``,
  a pickled ``argparse.Namespace``); the result builds :class:`~utils.model.promptmr.PromptMRPlus`;
- a dict holding any of these under ``state_dict`` (PyTorch Lightning style).

Nothing is ever unpickled beyond tensors, plain data and the allow-listed config classes of those
checkpoints (:data:`ALLOWED_CONFIG_CLASSES`): the file is read with ``torch.load(weights_only=True)``, so a
file holding any other object is refused, in one line naming it, before that object is built. The
architecture is inferred from the tensor names and shapes (:mod:`utils.model.reference_weights`);
``--set`` overrides model options (e.g. ``--set acs_lines=contiguous``). OUT holds the weights, the model
config and an ``origin`` record (source file, its SHA-256, layout, the source's epoch and config as plain
data); ``reconstruct_from_ckpt.py -c OUT`` and ``training.init_from=OUT`` accept it. OUT is written
atomically and never over an existing file.

The SNU challenge forbids pretrained weights (SPEC §3): importing is for reproducing an entry, for research
and for work on public fastMRI data.
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import types
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import OmegaConf

from utils.errors import ArgumentParser, UserInputError, file_error, run_cli
from utils.gates.torch_file import load_torch_file
from utils.gates.torch_floor import require_safe_torch
from utils.model.builder import build_model
from utils.model.checkpoint import CHECKPOINT_FORMAT, save_checkpoint, weights_mismatch
from utils.model.reference_weights import LAYOUTS, convert_state_dict, detect_layout

__all__ = ["ALLOWED_CONFIG_CLASSES", "read_foreign_checkpoint", "import_checkpoint", "main"]

# the only classes a foreign checkpoint may pickle besides tensors and plain data: the config objects the
# references store next to their weights (GeekSeek: SimpleNamespace holding paths; the challenge baseline:
# argparse.Namespace)
ALLOWED_CONFIG_CLASSES = (
    types.SimpleNamespace,
    argparse.Namespace,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    # concrete paths are built as pure ones: a checkpoint saved on Windows holds WindowsPath, which Linux cannot build
    (pathlib.PurePosixPath, "pathlib.PosixPath"),
    (pathlib.PureWindowsPath, "pathlib.WindowsPath"),
)


def _plain(value: Any) -> Any:
    """The allow-listed config objects as plain data (dicts, lists, strings, numbers), tensors left out."""
    if isinstance(value, (types.SimpleNamespace, argparse.Namespace)):
        value = vars(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items() if not isinstance(item, torch.Tensor)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def read_foreign_checkpoint(path: str | Path) -> dict[str, Any]:
    """The file through the torch-file gate with the config classes allowed; a UserInputError otherwise."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, "checkpoint not found")
    loaded = load_torch_file(path, ALLOWED_CONFIG_CLASSES)
    if not isinstance(loaded, dict):
        raise file_error(path, f"holds a {type(loaded).__name__}, not a state dict or a checkpoint dict")
    return loaded


def _weights_and_meta(path: Path, loaded: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict inside ``loaded`` and what the source says about itself."""
    if loaded.get("format") == CHECKPOINT_FORMAT:
        raise file_error(path, "is already a checkpoint of this repository; use it directly")
    meta: dict[str, Any] = {}
    if isinstance(loaded.get("model"), Mapping):  # the entry's checkpoints
        weights = loaded["model"]
        meta = {"source_epoch": _plain(loaded.get("epoch")), "source_args": _plain(loaded.get("args"))}
    elif isinstance(loaded.get("state_dict"), Mapping):
        weights = loaded["state_dict"]
    else:
        weights = loaded
    if not weights or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise file_error(path, "holds no state dict of tensors (looked at 'model', 'state_dict' and the top level)")
    weights = dict(weights)
    if all(key.startswith("module.") for key in weights):  # saved from DataParallel / DDP
        weights = {key.removeprefix("module."): value for key, value in weights.items()}
    return weights, meta


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    bad = [pair for pair in pairs if "=" not in pair]
    if bad:
        raise UserInputError(f"--set takes KEY=VALUE, got {bad[0]!r}")
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(pairs)))  # type: ignore[return-value]


def import_checkpoint(
    source: str | Path, out: str | Path, layout: str | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Convert ``source`` and write ``out``; returns the written checkpoint."""
    source, out = Path(source), Path(out)
    if out.exists():
        raise file_error(out, "already exists; choose another --out (an import never overwrites a file)")
    weights, meta = _weights_and_meta(source, read_foreign_checkpoint(source))
    try:
        layout = layout or detect_layout(weights)
        model_config, state_dict = convert_state_dict(weights, layout)
    except ValueError as err:
        raise file_error(source, f"cannot be imported: {err}") from None
    model_config.update(_overrides(overrides))
    try:
        model = build_model(model_config)
    except UserInputError as err:
        raise file_error(source, f"imports to a model config that cannot be built: {err}") from None
    mismatch = weights_mismatch(model.state_dict(), state_dict)
    if mismatch:
        raise file_error(source, f"weights do not fit the inferred model {model_config}: {mismatch}")
    origin = {
        "layout": layout,
        "file": str(source.resolve()),
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        **meta,
    }
    checkpoint = {"model": state_dict, "model_config": model_config, "epoch": 0, "origin": origin, "config": None}
    save_checkpoint(out, checkpoint)
    return checkpoint


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the foreign checkpoint or state dict")
    parser.add_argument("--out", required=True, help="where to write this repository's checkpoint (must not exist)")
    parser.add_argument("--layout", choices=LAYOUTS, default=None, help="the source's layout (default: from its key names)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model option of the inferred config (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    checkpoint = import_checkpoint(args.source, args.out, args.layout, args.overrides)
    config = checkpoint["model_config"]
    print(f"imported {args.source} ({checkpoint['origin']['layout']} layout) -> {args.out}")
    print(f"model: {config}; {sum(t.numel() for t in checkpoint['model'].values()):,} parameters")
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
