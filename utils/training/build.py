"""Everything a run needs before its first step, built from the config with clear errors.

Config values a user types (``training.epochs=0``, ``optimizer.lr=-1``, an unknown ``logger.mode``) are
checked here and reported as one :class:`~utils.errors.UserInputError` naming the key.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, NoReturn, Sequence

import torch
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from utils.data.augment import AugmentSchedule, ImageAugment, MaskAugment, TrainingTransform
from utils.data.compression import CoilCompressor, build_compressor
from utils.data.dataset import SliceDataset
from utils.data.layout import ANATOMIES
from utils.data.subset import DataSubset
from utils.data.transforms import ApplyFileMask
from utils.errors import UserInputError
from utils.training.logger import LOGGER_MODES
from utils.training.schedulers import scheduler_arguments

__all__ = ["check_command_line", "check_config", "resolve_device", "prepare_data", "build_train_transform", "build_datasets", "build_optimizer", "build_scheduler", "build_loss"]

log = logging.getLogger("train")
SCHEDULER_INTERVALS = ("epoch", "step")
SELECTION_METRICS = ("val_ssim", "val_total_2026", "train_loss")  # higher is better for the val_* metrics
NONFINITE_POLICIES = ("skip", "stop")
AMP_MODES = ("none", "fp16", "bf16")


def _require(condition: bool, key: str, expected: str, value: Any) -> None:
    if not condition:
        raise UserInputError(f"config value {key}={value!r} is invalid: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig) -> None:
    """Reject invalid values of the keys users override most, before anything is built."""
    training, data = cfg.training, cfg.data
    _require(_is_int(cfg.seed) and 0 <= cfg.seed < 2**32, "seed", "an integer from 0 to 2**32 - 1", cfg.seed)
    _require(isinstance(cfg.exp_name, str) and cfg.exp_name.strip() not in ("", ".", ".."), "exp_name", "a folder name", cfg.exp_name)
    _require("/" not in cfg.exp_name, "exp_name", "a folder name without '/'", cfg.exp_name)
    _require(_is_int(training.epochs) and training.epochs >= 1, "training.epochs", "an integer >= 1", training.epochs)
    _require(_is_int(training.grad_accumulation) and training.grad_accumulation >= 1, "training.grad_accumulation", "an integer >= 1", training.grad_accumulation)
    clip = training.grad_clip
    _require(clip is None or (isinstance(clip, (int, float)) and clip > 0), "training.grad_clip", "a number > 0 or null", clip)
    _require(_is_int(training.val_every) and training.val_every >= 1, "training.val_every", "an integer >= 1", training.val_every)
    _require(training.select_best_by in SELECTION_METRICS, "training.select_best_by", " or ".join(SELECTION_METRICS), training.select_best_by)
    _require(_is_int(data.batch_size) and data.batch_size >= 1, "data.batch_size", "an integer >= 1", data.batch_size)
    _require(_is_int(data.num_workers) and data.num_workers >= 0, "data.num_workers", "an integer >= 0", data.num_workers)
    _require(cfg.logger.mode in LOGGER_MODES, "logger.mode", " or ".join(LOGGER_MODES), cfg.logger.mode)
    every = training.checkpoint_every_steps
    _require(_is_int(every) and every >= 0, "training.checkpoint_every_steps", "an integer >= 0 (0: only at epoch ends)", every)
    for key, meaning in (("checkpoint_every_minutes", "0: never"), ("disk_reserve_gb", "0: none")):
        value = training.get(key, 0)
        _require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"), f"training.{key}", f"a number >= 0 ({meaning})", value)
    _require(training.nonfinite in NONFINITE_POLICIES, "training.nonfinite", " or ".join(NONFINITE_POLICIES), training.nonfinite)
    _require(isinstance(training.deterministic, bool), "training.deterministic", "true or false", training.deterministic)
    _require(training.amp in AMP_MODES, "training.amp", " or ".join(AMP_MODES), training.amp)
    patience = training.early_stopping_patience
    _require(_is_int(patience) and patience >= 0, "training.early_stopping_patience", "an integer >= 0 (0: never stop early)", patience)
    both = training.train_on_train_and_val
    _require(isinstance(both, bool), "training.train_on_train_and_val", "true or false", both)
    if both:
        _require(training.select_best_by == "train_loss", "training.select_best_by", "train_loss when training.train_on_train_and_val=true (the validation split is trained on)", training.select_best_by)
        _require(patience == 0, "training.early_stopping_patience", "0 when training.train_on_train_and_val=true (there is no validation)", patience)
        _require("ReduceLROnPlateau" not in str(cfg.scheduler.get("_target_")), "scheduler", "a schedule that needs no validation when training.train_on_train_and_val=true", cfg.scheduler.get("_target_"))
    init_from = training.get("init_from")
    _require(init_from is None or (isinstance(init_from, str) and init_from != ""), "training.init_from", "a checkpoint path or null", init_from)
    lr = cfg.optimizer.get("lr")
    _require(isinstance(lr, (int, float)) and lr > 0, "optimizer.lr", "a number > 0", lr)
    interval = cfg.scheduler.get("interval", "epoch")
    _require(interval in SCHEDULER_INTERVALS, "scheduler.interval", " or ".join(SCHEDULER_INTERVALS), interval)
    _check_weighting(cfg)


def _check_weighting(cfg: DictConfig) -> None:
    """The weight averaging keys (``training.ema_decay``, ``training.keep_epoch_weights``)."""
    decay, keep = cfg.training.get("ema_decay", 0.0), cfg.training.get("keep_epoch_weights", 0)
    _require(isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0.0 <= decay < 1.0, "training.ema_decay",
             "a number in [0, 1) (0: no EMA; e.g. 0.999)", decay)
    _require(_is_int(keep) and keep >= 0, "training.keep_epoch_weights", "an integer >= 0 (0: keep none)", keep)



def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; ``cuda``/``cuda:N`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserInputError(f"config value training.device={name!r} is invalid: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise UserInputError(f"training.device={name}: that CUDA device is not available on this machine")
    return device


def prepare_data(data_cfg: DictConfig, seed: int) -> Path:
    """The data root; with ``data.synthetic_preset`` set, missing synthetic data is generated first."""
    root = Path(data_cfg.root)
    if data_cfg.get("synthetic_preset"):
        from utils.data.synthetic.generate import generate  # heavy imports only when needed

        written = generate(root, data_cfg.synthetic_preset, seed=seed, workers=min(2, os.cpu_count() or 1))
        if written:
            log.info("generated %d synthetic '%s' volumes under %s", len(written), data_cfg.synthetic_preset, root)
    return root


def build_train_transform(augment_cfg: DictConfig, epochs: int, compressor: CoilCompressor | None) -> TrainingTransform | ApplyFileMask:
    """``augment/*.yaml`` -> the training transform (the plain file-mask transform when nothing is augmented)."""
    node = OmegaConf.to_container(augment_cfg, resolve=True)
    if node.get("image") is None and node.get("mask") is None:
        return ApplyFileMask(compressor)
    for part in ("schedule", "image", "mask"):
        if not isinstance(node.get(part, {}), (dict, type(None))) or (part == "schedule" and not isinstance(node.get(part), dict)):
            raise UserInputError(f"config value augment.{part}={node.get(part)!r} is invalid: expected a mapping of its options")
    try:
        schedule = AugmentSchedule(**node["schedule"], total_epochs=epochs)
        mask = None if node.get("mask") is None else MaskAugment(**{key: tuple(value) if isinstance(value, list) else value for key, value in node["mask"].items()})
    except Exception as err:  # noqa: BLE001 - whatever the constructors raise for a user's values
        raise UserInputError(f"the augment config cannot be built: {_first_line(err)}") from None
    image, image_by_anatomy = (None, {}) if node.get("image") is None else _image_augments(node["image"])
    return TrainingTransform(schedule, image, mask, compressor, image_by_anatomy)


def _image_augments(node: dict[str, Any]) -> tuple[ImageAugment, dict[str, ImageAugment]]:
    """``augment.image`` -> (the shared MRAugment settings, anatomy -> its settings).

    ``augment.image.brain`` / ``augment.image.knee`` hold what differs for that anatomy (``weights`` merge per
    augmentation), so the per-anatomy settings live where MRAugment's settings live and repeat nothing.
    """
    settings = [item.name for item in dataclasses.fields(ImageAugment)]
    unknown = sorted(set(node) - set(settings) - set(ANATOMIES))
    if unknown:
        raise UserInputError(f"config key augment.image.{unknown[0]} is unknown: expected an MRAugment setting "
                             f"({', '.join(settings)}) or an anatomy ({', '.join(ANATOMIES)})")
    shared = {key: tuple(value) if isinstance(value, list) else value for key, value in node.items() if key in settings}
    try:
        image = ImageAugment(**shared)  # weights it does not name are 0, as before per-anatomy settings existed
    except Exception as err:  # noqa: BLE001 - whatever the constructor raises for a user's values
        raise UserInputError(f"config augment.image cannot be built: {_first_line(err)}") from None
    return image, {anatomy: _anatomy_augment(image, anatomy, node[anatomy]) for anatomy in ANATOMIES if node.get(anatomy) is not None}


def _anatomy_augment(image: ImageAugment, anatomy: str, overrides: Any) -> ImageAugment:
    """The shared settings ``image`` with ``augment.image.<anatomy>`` applied."""
    key = f"augment.image.{anatomy}"
    if not isinstance(overrides, dict) or not isinstance(overrides.get("weights", {}), dict):
        raise UserInputError(f"config value {key}={overrides!r} is invalid: expected a mapping of MRAugment settings")
    settings = [item.name for item in dataclasses.fields(ImageAugment)]
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise UserInputError(f"config key {key}.{unknown[0]} is unknown: expected one of {', '.join(settings)}")
    try:
        return image.updated(overrides)
    except Exception as err:  # noqa: BLE001 - whatever the constructor raises for a user's values
        raise UserInputError(f"config {key} cannot be built: {_first_line(err)}") from None


def build_datasets(cfg: DictConfig, root: Path) -> tuple[SliceDataset, SliceDataset]:
    """Train and validation slice datasets.

    Train applies the ``augment`` transform (per-example draws from ``(seed, epoch, index)``) and the mask
    duplication; with ``training.train_on_train_and_val`` it reads the validation split too. Validation
    applies the file masks. Both apply the ``compressor``.
    """
    data_cfg = cfg.data
    compressor = build_compressor(cfg.get("compressor"))
    augment_cfg = cfg.get("augment") or OmegaConf.create({"image": None, "mask": None})
    transform = build_train_transform(augment_cfg, cfg.training.epochs, compressor)
    train_roots = [root / data_cfg.train_split]
    if cfg.training.get("train_on_train_and_val", False):
        train_roots.append(root / data_cfg.val_split)
    duplicate = augment_cfg.get("duplicate_accelerations")
    subset = DataSubset.from_config(data_cfg.get("subset"))  # an expert's anatomy / acceleration (utils/data/subset.py)
    train_set = SliceDataset(train_roots, transform, seed=cfg.seed, accelerations=subset.train_accelerations(duplicate),
                             keep_volume=subset.train_selection())
    val_set = SliceDataset(root / data_cfg.val_split, ApplyFileMask(compressor), seed=cfg.seed, keep_volume=subset.val_selection())
    return train_set, val_set


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _instantiate(group: str, node: DictConfig, **extra: Any) -> Any:
    try:
        return instantiate(node, **extra)
    except Exception as err:  # noqa: BLE001 - Hydra wraps whatever the target raises for a user's values
        lines = [line for line in str(err).strip().splitlines() if not line.startswith("full_key:")]  # Hydra's last line
        cause = err.__cause__  # the target's own sentence (e.g. "area_weight must be one of ..."), not Hydra's wrapper
        message = _first_line(cause) if isinstance(cause, (ValueError, TypeError)) else (lines[-1] if lines else err.__class__.__name__)
        raise UserInputError(f"the {group} config cannot be built: {message}") from None


def build_optimizer(optimizer_cfg: DictConfig, parameters) -> torch.optim.Optimizer:
    """``optimizer/*.yaml`` (a ``_partial_`` torch optimizer) applied to ``parameters``; its ``lr`` is the lr used."""
    factory = _instantiate("optimizer", optimizer_cfg)
    try:
        return factory(parameters)
    except Exception as err:  # noqa: BLE001 - torch's optimizers raise several kinds for bad values
        raise UserInputError(f"the optimizer config cannot be built: {_first_line(err)}") from None


def build_scheduler(
    scheduler_cfg: DictConfig, optimizer: torch.optim.Optimizer, epochs: int = 1, steps_per_epoch: int = 1
) -> tuple[Any, str]:
    """``scheduler/*.yaml`` applied to ``optimizer``, and its stepping ``interval`` (epoch or step).

    Schedules that need the run's length get ``total_steps`` (optimizer steps, or epochs when stepped per
    epoch) and OneCycle gets ``max_lr`` = the optimizer's lr.
    """
    node = OmegaConf.to_container(scheduler_cfg, resolve=True)
    interval = node.pop("interval", "epoch")
    factory = _instantiate("scheduler", OmegaConf.create(node))
    total_steps = epochs * steps_per_epoch if interval == "step" else epochs
    try:
        return factory(optimizer, **scheduler_arguments(factory, optimizer, total_steps, set(node))), interval
    except Exception as err:  # noqa: BLE001 - torch's schedulers raise several kinds for bad values
        raise UserInputError(f"the scheduler config cannot be built: {_first_line(err)}") from None


def build_loss(loss_cfg: DictConfig) -> torch.nn.Module:
    """``loss/*.yaml`` -> a loss module ``(output, target, fg_mask, max_value) -> scalar``."""
    return _instantiate("loss", loss_cfg)


def _hydra_message(err: Exception, config_dir: Path) -> str:
    """Hydra's several-line report (message, cause, search path, option list) as one sentence."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    lines = [line for line in lines if not line.startswith("See https://hydra.cc")]
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        option = config_dir / f"{err.missing_cfg_file}.yaml"
        return f"{option}: no such config option; choose one of {', '.join(err.options)}"
    if isinstance(err, OverrideParseException):
        return f"override {err.override!r} cannot be parsed: {'; '.join(lines)}"
    head, hints = (lines[0] if lines else err.__class__.__name__), lines[1:]
    if isinstance(err, OmegaConfBaseException):  # keep 'full_key: ...', drop omegaconf's type details
        hints = [hint for hint in hints if hint.startswith("full_key")]
    if err.__cause__ is not None and str(err.__cause__).strip():
        head = f"{head.rstrip('.')}: {str(err.__cause__).strip().splitlines()[0]}"
    return head + (f" ({'; '.join(hints)})" if hints else "")


def check_command_line(argv: Sequence[str], config_dir: Path, default_config: str) -> None:
    """Compose the run config as ``@hydra.main`` will and check its run folder can be made, before Hydra runs.

    Hydra reports an unknown ``--config-name``, a malformed or unknown override and an unwritable run folder
    over several lines (the last with a traceback) and exits with status 1; here each is one UserInputError.
    Requests that do not start a run (``--help``, ``--cfg``, ``--info``, ``-m`` ...) are left to Hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message: str) -> NoReturn:  # argparse would print its usage over several lines
        hint = " (options such as --config-name go before the key=value overrides)" if "unrecognized" in message else ""
        raise UserInputError(f"command line: {message}{hint}")

    parser.error = refuse  # type: ignore[method-assign]
    args = parser.parse_args(list(argv))
    if any((args.help, args.hydra_help, args.cfg, args.info, args.shell_completion, args.multirun,
            args.experimental_rerun, args.config_path, args.config_dir)):
        return
    name = args.config_name or default_config
    if not (config_dir / f"{name.removesuffix('.yaml')}.yaml").is_file():
        choices = ", ".join(sorted(path.stem for path in config_dir.glob("*.yaml")))
        raise UserInputError(f"--config-name={name}: there is no {config_dir / name}.yaml; choose one of {choices}")
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name=name.removesuffix(".yaml"), overrides=args.overrides, return_hydra_config=True)
            run_dir = Path(cfg.hydra.run.dir)
    except (HydraException, OmegaConfBaseException) as err:
        raise UserInputError(_hydra_message(err, config_dir)) from err
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)  # Hydra makes it next; an OSError there is a traceback
    except OSError as err:
        raise UserInputError(f"{run_dir.parent}: cannot create the run folder ({err.strerror}); check result_root= and exp_name=") from err
    if not os.access(run_dir.parent, os.W_OK):
        raise UserInputError(f"{run_dir.parent}: the run folder is not writable; check result_root= and exp_name=")
