"""The training run: epochs of optimizer steps, validation, checkpoints and logs under result/<exp_name>/.

    result/<exp_name>/
      checkpoints/model.pt         every epoch (and every training.checkpoint_every_steps / _minutes): resume from here
      checkpoints/best_model.pt    best by validation SSIM (or by train loss, see training.select_best_by)
      train_loss_log.npy, val_loss_log.npy, val_ssim_log.npy      (epoch, value) rows
      train_step_loss_log.npy      (optimizer step, loss) rows: where two runs first differ
      reconstructions_val/<fname>.h5                               with training.save_val_reconstructions
      figures/val_epoch{E}.png, figures/curves.png                 with training.figures (utils/figures.py)
      hydra/<time>/                resolved config, overrides and the text log of each invocation
      wandb/                       W&B files (logger.mode offline or online)

Under ``torchrun`` (see :mod:`utils.distributed`) every rank trains on its shard through
DistributedDataParallel and validates its share of the volumes; only rank 0 writes anything.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from utils.data.sampler import ShapeGroupedBatchSampler
from utils.errors import UserInputError, file_error
from utils.figures import draw_comparison_grid, draw_curves, require_matplotlib
from utils.inference.reconstruct import volume_loader
from utils.inference.writer import ReconstructionWriter
from utils.model.builder import build_model
from utils.model.feature_varnet import FeatureVarNet
from utils.model.checkpoint import load_checkpoint, weights_mismatch
from utils.training.checkpoint_policy import CheckpointTimer, DiskSpaceGuard, write_checkpoints
from utils.distributed import Distributed, init_distributed
from utils.training.elastic import kill_point_for_tests, launch_id, resume_after_restart
from utils.training.interrupt import Interrupted, StopOnSignal
from utils.training.logger import RunLogger, write_history
from utils.training.loop import TrainState, make_grad_scaler, train_one_epoch
from utils.training.rng import capture_rng_state, configure_determinism, restore_rng_state, seed_everything, seed_worker
from utils.training.schedulers import is_plateau
from utils.training.build import build_datasets, build_loss, build_optimizer, build_scheduler, check_config, prepare_data, resolve_device
from utils.training.validate import validate

__all__ = ["TrainState", "train"]

log = logging.getLogger("train")


def _improved(value: float, best: float | None, select_best_by: str) -> bool:
    if best is None:
        return True
    return value > best if select_best_by == "val_ssim" else value < best


def _checkpoint(model, optimizer, scheduler, scaler, transform, state: TrainState, cfg: DictConfig, rng_per_rank: list[dict]) -> dict[str, Any]:
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():  # the non-finite guard makes this unreachable; never save it
            raise RuntimeError(f"parameter {name} is not finite; refusing to write a checkpoint")
    fields = asdict(state)
    fields["step_loss_log"] = torch.tensor(state.step_loss_log, dtype=torch.float64).reshape(-1, 2)
    return {
        "model": model.state_dict(),
        "model_config": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "augment": transform.state_dict() if hasattr(transform, "state_dict") else None,
        "select_best_by": cfg.training.select_best_by,
        "rng": rng_per_rank[0],
        "rng_per_rank": rng_per_rank,  # one state per rank under torchrun
        "config": OmegaConf.to_container(cfg, resolve=True),
        **fields,
    }


def _layout(cfg: DictConfig, dist: Distributed) -> dict[str, int]:
    """What fixes the batches of an epoch and the optimizer steps: a resume must keep it."""
    return {"world_size": dist.world_size, "batch_size": cfg.data.batch_size, "grad_accumulation": cfg.training.grad_accumulation}


def _same_model_config(saved: dict, current: dict) -> bool:
    """Equal model configs, counting keys a checkpoint predates (e.g. identity_init) at their defaults."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(FeatureVarNet.__init__).parameters.items()
                if parameter.default is not inspect.Parameter.empty}

    def normalise(config: dict) -> dict:
        return {**defaults, **{key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}}

    return normalise(saved) == normalise(current)


def _fresh_state(cfg: DictConfig, model: torch.nn.Module) -> TrainState:
    """A new run: random weights, or those of ``training.init_from`` (model only; the optimizer starts fresh)."""
    path = cfg.training.get("init_from")
    if not path:
        return TrainState()
    checkpoint = load_checkpoint(path)
    mismatch = weights_mismatch(model.state_dict(), checkpoint["model"])
    if mismatch:
        raise file_error(path, f"weights do not fit this run's model config (training.init_from): {mismatch}; "
                               f"its own config is {checkpoint['model_config']}")
    model.load_state_dict(checkpoint["model"])
    record = {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
              "origin": checkpoint.get("origin")}
    log.info("initialised the model from %s (origin: %s); the optimizer starts fresh", path, record["origin"] or "this repository")
    return TrainState(init_from=record)


def _start(cfg: DictConfig, checkpoint_dir: Path, model, optimizer, scheduler, scaler, transform, dist: Distributed) -> TrainState:
    """A fresh state, or the one in ``model.pt`` with ``training.resume`` or after a torchrun restart of this
    launch (:mod:`utils.training.elastic`); never silently over an old run."""
    last = checkpoint_dir / "model.pt"
    if not (resume_after_restart(last, dist) or cfg.training.resume):
        if last.exists() and not cfg.training.overwrite:
            raise UserInputError(
                f"{checkpoint_dir.parent}: already holds a run; continue it with training.resume=true, "
                "pick another exp_name=, or start over with training.overwrite=true"
            )
        return _fresh_state(cfg, model)
    if not last.exists():
        log.warning("training.resume=true but %s does not exist: starting from scratch", last)
        return _fresh_state(cfg, model)
    checkpoint = load_checkpoint(last)
    if not _same_model_config(checkpoint["model_config"], OmegaConf.to_container(cfg.model, resolve=True)):
        raise file_error(last, "was trained with another model config; resume with the same model= settings")
    saved_layout = checkpoint.get("layout", {"world_size": 1, "batch_size": cfg.data.batch_size, "grad_accumulation": cfg.training.grad_accumulation})
    if saved_layout != _layout(cfg, dist):
        raise file_error(last, f"was written by a run with {saved_layout}, this one has {_layout(cfg, dist)}; resume with the "
                               "same number of processes, data.batch_size and training.grad_accumulation (its position in the "
                               "epoch and its lr schedule depend on them)")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler.is_enabled() and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    if hasattr(transform, "load_state_dict") and checkpoint.get("augment"):
        transform.load_state_dict(checkpoint["augment"])
    per_rank = checkpoint.get("rng_per_rank") or [checkpoint["rng"]]
    if len(per_rank) != dist.world_size:
        log.warning("%s was written by %d process(es), this run has %d: every rank restores rank 0's RNG state",
                    last, len(per_rank), dist.world_size)
    restore_rng_state(per_rank[dist.rank] if len(per_rank) == dist.world_size else per_rank[0])
    fields = {key: checkpoint[key] for key in TrainState.__dataclass_fields__ if key in checkpoint}
    fields["step_loss_log"] = fields["step_loss_log"].tolist()
    state = TrainState(**fields)
    log.info("resumed %s at epoch %d, batch %d (step %d)", last, state.epoch, state.batches_done, state.global_step)
    return state


def _write_logs(run_dir: Path, state: TrainState) -> None:
    try:
        write_history(run_dir / "train_loss_log.npy", state.train_loss_log)
        write_history(run_dir / "val_loss_log.npy", state.val_loss_log)
        write_history(run_dir / "val_ssim_log.npy", state.val_ssim_log)
        write_history(run_dir / "train_step_loss_log.npy", state.step_loss_log)
    except OSError as err:
        raise file_error(run_dir, f"cannot write the loss logs ({err.strerror or err})") from err


def _make_folder(checkpoint_dir: Path) -> None:
    try:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(f"{checkpoint_dir}: cannot create the run folder ({err.strerror})") from None


def _write_reconstructions(folder: Path, val_set, outputs) -> None:
    """``reconstructions_val/<fname>.h5`` from the gathered (fname, slice, image) validation outputs."""
    writer = ReconstructionWriter(folder, {v.kspace_path.name: v.kspace.num_slices for v in val_set.volumes})
    for fname, slice_idx, image in outputs:
        writer.add(fname, slice_idx, image)
    writer.close()


def _draw(name: str, draw, *args) -> Path | None:
    """A figure is a side product: a failure to draw one is a warning, never the end of a run."""
    try:
        return draw(*args)
    except Exception as err:  # noqa: BLE001 - matplotlib raises many kinds
        log.warning("figure %s not drawn: %s: %s", name, type(err).__name__, err)
        return None


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(cfg: DictConfig, progress: bool = True) -> TrainState:
    """Run (or resume) the training described by a composed ``configs/train.yaml``-style config."""
    check_config(cfg)
    settings = cfg.training
    figures = settings.get("figures", True)
    if not isinstance(figures, bool):
        raise UserInputError(f"config value training.figures={figures!r} is invalid: expected true or false")
    if figures:
        require_matplotlib("training.figures=true")
    dist, rank_device = init_distributed(settings.device)
    try:
        return _train(cfg, dist, rank_device or resolve_device(settings.device), progress and dist.is_main)
    finally:
        dist.close()


def _train(cfg: DictConfig, dist: Distributed, device: torch.device, progress: bool) -> TrainState:
    settings = cfg.training
    if not dist.is_main:
        log.setLevel(logging.WARNING)  # rank 0 reports; the others only warn
    run_dir = Path(cfg.result_root) / cfg.exp_name
    checkpoint_dir = run_dir / "checkpoints"
    figures = settings.get("figures", True) and dist.is_main  # only rank 0 draws
    configure_determinism(settings.deterministic)
    seed_everything(cfg.seed)

    # one rank generates missing synthetic data, the others wait for it (and stop with it if it fails)
    dist.on_main("preparing the data", lambda: prepare_data(cfg.data, cfg.seed))
    train_set, val_set = build_datasets(cfg, Path(cfg.data.root))
    module = build_model(cfg.model).to(device)
    optimizer = build_optimizer(cfg.optimizer, module.parameters())
    sampler = ShapeGroupedBatchSampler(train_set.example_shapes(), cfg.data.batch_size, shuffle=True, seed=cfg.seed,
                                       num_replicas=dist.world_size, rank=dist.rank)
    steps_per_epoch = math.ceil(sampler.batches_per_epoch() / settings.grad_accumulation)
    scheduler, interval = build_scheduler(cfg.scheduler, optimizer, settings.epochs, steps_per_epoch)
    scaler = make_grad_scaler(settings.amp, device)
    loss_fn = build_loss(cfg.loss)
    state = _start(cfg, checkpoint_dir, module, optimizer, scheduler, scaler, train_set.transform, dist)
    validating = not settings.train_on_train_and_val
    dist.on_main("creating the run folder", lambda: _make_folder(checkpoint_dir))
    # every rank starts from the same weights (rank 0's, broadcast by DDP); no unused parameters to look for
    model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else module

    loader_seed = torch.Generator()
    train_loader = DataLoader(
        train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers, worker_init_fn=seed_worker,
        generator=loader_seed, pin_memory=device.type == "cuda",
    )
    val_loader = volume_loader(val_set, cfg.data.batch_size, cfg.data.num_workers, pin_memory=device.type == "cuda",
                               rank=dist.rank, world_size=dist.world_size)
    logger_args = (cfg.logger.project, cfg.exp_name, OmegaConf.to_container(cfg, resolve=True), cfg.logger.entity, cfg.logger.tags)
    logger = dist.on_main("starting the logger", lambda: RunLogger(run_dir, cfg.logger.mode, *logger_args))
    logger = logger or RunLogger(run_dir, "disabled", *logger_args)  # the other ranks log nothing
    log.info("training %s: %d train / %d val slices, %s, device %s, %d process(es)", cfg.exp_name, len(train_set),
             len(val_set), module.cascade_counts, device, dist.world_size)

    guard = DiskSpaceGuard(settings.get("disk_reserve_gb", 0.0))
    timer = CheckpointTimer(settings.get("checkpoint_every_minutes", 0))

    def save(names: tuple[str, ...]) -> list[Path] | None:
        """Write checkpoints (rank 0) and tell every rank whether that worked; every rank calls it, since the
        RNG states are gathered from all. Returns the files written on rank 0 (None elsewhere)."""
        rng_per_rank = dist.gather(capture_rng_state())

        def write() -> list[Path]:
            checkpoint = _checkpoint(module, optimizer, scheduler, scaler, train_set.transform, state, cfg, rng_per_rank)
            checkpoint["layout"] = _layout(cfg, dist)
            checkpoint["launch"] = launch_id()  # a torchrun restart resumes only this launch's checkpoints
            written = write_checkpoints([checkpoint_dir / name for name in names], checkpoint, guard)
            _write_logs(run_dir, state)
            return written

        written = dist.on_main(f"saving checkpoints in {checkpoint_dir}", write)
        timer.reset()
        return written

    def save_last() -> list[Path] | None:
        return save(("model.pt",))

    def on_step(stepped: bool) -> None:
        if stepped and interval == "step" and not is_plateau(scheduler):
            scheduler.step()
        every_steps = stepped and settings.checkpoint_every_steps and state.global_step % settings.checkpoint_every_steps == 0
        if every_steps or (timer.enabled and dist.any(timer.due(), device)):  # the same decision on every rank
            if save_last():  # not if the disk is too full (rank 0 alone logs)
                log.info("checkpoint at step %d (epoch %d, batch %d)", state.global_step, state.epoch, state.batches_done)
        kill_point_for_tests(state.global_step, dist.rank)

    stop_signal = None
    try:
        with StopOnSignal() as stop:
            try:
                for epoch in range(state.epoch, settings.epochs):
                    sampler.set_epoch(epoch, start=state.batches_done)
                    train_set.set_epoch(epoch)
                    loader_seed.manual_seed(cfg.seed * 1000 + epoch)  # worker seeds depend on (seed, epoch) only
                    started, slices_before = time.perf_counter(), state.epoch_slices
                    train_loss = train_one_epoch(
                        model, train_loader, sampler.batches_per_epoch(), loss_fn, optimizer, on_step, state, settings, device,
                        stop, progress, scaler, dist,
                    )
                    log.info("epoch %d trained: %d samples in %.1f s", epoch, state.epoch_slices - slices_before, time.perf_counter() - started)
                    metrics = {"train/loss": train_loss, "lr": optimizer.param_groups[0]["lr"], "train/skipped_steps": state.skipped_steps}
                    if hasattr(train_set.transform, "probability"):
                        metrics["train/augment_probability"] = train_set.transform.probability
                    if interval == "epoch" and not is_plateau(scheduler):
                        scheduler.step()
                    state.train_loss_log.append([epoch, train_loss])
                    selection_value = train_loss if settings.select_best_by == "train_loss" else None
                    drawn = {}  # W&B key -> PNG of this epoch

                    if validating and ((epoch + 1) % settings.val_every == 0 or epoch + 1 == settings.epochs):
                        result = validate(module, val_loader, loss_fn, device, settings.log_images, progress, dist=dist,
                                          keep_outputs=settings.save_val_reconstructions, figure_rows=settings.get("figures", True))
                        if settings.save_val_reconstructions:
                            dist.on_main("writing reconstructions_val", lambda: _write_reconstructions(run_dir / "reconstructions_val", val_set, result.outputs))
                        state.val_loss_log.append([epoch, result.loss])
                        state.val_ssim_log.append([epoch, result.ssim])
                        state.val_zero_filled_ssim_log.append([epoch, result.zero_filled_ssim])
                        if figures and result.figure_rows:
                            drawn["figures/validation"] = _draw("val", draw_comparison_grid, result.figure_rows, run_dir / "figures" / f"val_epoch{epoch}.png",
                                                                f"{cfg.exp_name}: validation after epoch {epoch}")
                        metrics.update({"val/loss": result.loss, "val/ssim": result.ssim, "val/ssim_zero_filled": result.zero_filled_ssim})
                        metrics.update({f"val/ssim_{group}": value for group, value in result.group_ssim.items()})
                        logger.log_images(result.images, epoch)
                        if settings.select_best_by == "val_ssim":
                            selection_value = result.ssim
                        if is_plateau(scheduler):
                            scheduler.step(result.ssim)
                        best_ssim = max((value for _, value in state.val_ssim_log[:-1]), default=-math.inf)
                        improved_ssim = result.ssim > best_ssim + settings.early_stopping_min_delta
                        state.validations_since_best = 0 if improved_ssim else state.validations_since_best + 1

                    improved = selection_value is not None and math.isfinite(selection_value) and _improved(selection_value, state.best_metric, settings.select_best_by)
                    if improved:
                        state.best_metric, state.best_epoch = selection_value, epoch
                    state.epoch, state.batches_done, state.epoch_loss_sum, state.epoch_slices = epoch + 1, 0, 0.0, 0
                    save(("model.pt", "best_model.pt") if improved else ("model.pt",))
                    if figures:
                        drawn["figures/curves"] = _draw("curves", draw_curves, state.train_loss_log, state.val_loss_log, state.val_ssim_log,
                                                        state.val_zero_filled_ssim_log, run_dir / "figures" / "curves.png", cfg.exp_name)
                    logger.log_figures(drawn, epoch)
                    logger.log({**metrics, "best/" + settings.select_best_by: state.best_metric}, epoch)
                    patience = settings.early_stopping_patience
                    if patience and state.validations_since_best >= patience:
                        log.info("early stopping after epoch %d: no val SSIM improvement in %d validations", epoch, patience)
                        break
            except Interrupted as interrupt:
                save_last()  # inside StopOnSignal: a second signal cannot cut it short; every rank is here
                log.warning("stopped by %s: resumable checkpoint %s (epoch %d, batch %d); continue with training.resume=true",
                            interrupt, checkpoint_dir / "model.pt", state.epoch, state.batches_done)
                stop_signal = interrupt.signum
    finally:
        logger.finish()
    if stop_signal is not None:
        sys.exit(128 + stop_signal)
    if dist.enabled:
        digests = set(dist.gather(_weights_digest(module)))
        if len(digests) != 1:
            raise RuntimeError(f"ranks ended with different weights ({len(digests)} distinct digests)")
        log.info("weights identical on all %d ranks", dist.world_size)
    log.info("best %s %s at epoch %s; checkpoints in %s", settings.select_best_by, state.best_metric, state.best_epoch, checkpoint_dir)
    return state
