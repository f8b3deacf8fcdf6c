"""The training run: epochs of optimizer steps, validation, checkpoints and logs under result/<exp_name>/.

    result/<exp_name>/
      checkpoints/model.pt         every epoch (and every training.checkpoint_every_steps / _minutes): resume from here
      checkpoints/best_model.pt    best by the validation Total of 2025 (training.select_best_by: val_ssim), of 2026
                                   (val_total_2026) or by train loss (train_loss); the EMA weights with training.ema_decay
      checkpoints/epoch{E}.pt      the weights of the last N epochs with training.keep_epoch_weights: N
      train_loss_log.npy, val_loss_log.npy, val_ssim_log.npy, val_total_2026_log.npy      (epoch, value) rows
      train_step_loss_log.npy      (optimizer step, loss) rows: where two runs first differ
      reconstructions_val/<fname>.h5                               with training.save_val_reconstructions
      figures/val_epoch{E}.png, figures/curves.png                 with training.figures (utils/figures.py)
      hydra/<time>/                resolved config, overrides and the text log of each invocation
      wandb/                       W&B files (logger.mode offline or online)

Under ``torchrun`` (see :mod:`utils.distributed`) every rank trains on its shard through
DistributedDataParallel and validates its share of the volumes; only rank 0 writes anything.
With ``training.ema_decay`` an exponential moving average of the weights is updated after every optimizer step
(:mod:`utils.training.weight_average`) and validated instead of the raw weights.
"""
from __future__ import annotations

import hashlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from utils.data.dataset import SliceDataset
from utils.data.sampler import ShapeGroupedBatchSampler
from utils.distributed import Distributed, init_distributed
from utils.errors import UserInputError
from utils.figures import draw_comparison_grid, draw_curves, require_matplotlib
from utils.inference.reconstruct import volume_loader
from utils.inference.writer import ReconstructionWriter
from utils.model.builder import build_model
from utils.training.build import build_datasets, build_loss, build_optimizer, build_scheduler, check_config, prepare_data, resolve_device
from utils.training.checkpointer import Checkpointer
from utils.training.elastic import kill_point_for_tests
from utils.training.epoch_weights import remove_epoch_weights
from utils.training.interrupt import Interrupted, StopOnSignal
from utils.training.logger import RunLogger
from utils.training.loop import TrainState, make_grad_scaler, train_one_epoch
from utils.training.resume import start_state
from utils.training.rng import configure_determinism, seed_everything, seed_worker
from utils.training.schedulers import is_plateau
from utils.training.validate import validate
from utils.training.weight_average import WeightEMA

__all__ = ["TrainState", "train"]

log = logging.getLogger("train")


@dataclass
class Run:
    """Everything a training run holds from its first epoch to its last (built by :func:`_build_run`)."""

    cfg: DictConfig
    dist: Distributed
    device: torch.device
    run_dir: Path
    module: nn.Module  # the network; under torchrun ``model`` wraps it in DistributedDataParallel
    model: nn.Module
    ema: WeightEMA | None  # the moving average of ``module``'s weights (training.ema_decay), validated when set
    optimizer: torch.optim.Optimizer
    scheduler: Any
    interval: str  # the scheduler steps per "epoch" or per optimizer "step"
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    train_set: SliceDataset
    val_set: SliceDataset
    sampler: ShapeGroupedBatchSampler
    train_loader: DataLoader
    val_loader: DataLoader
    loader_seed: torch.Generator
    logger: RunLogger
    state: TrainState
    checkpointer: Checkpointer
    figures: bool  # draw figures (rank 0 only)
    progress: bool


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


def _build_run(cfg: DictConfig, dist: Distributed, device: torch.device, progress: bool) -> Run:
    """Data, network, optimizer, schedule, loaders, logger and the starting state (fresh or resumed)."""
    settings = cfg.training
    run_dir = Path(cfg.result_root) / cfg.exp_name
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
    ema = WeightEMA(module, settings.ema_decay) if settings.get("ema_decay", 0.0) else None
    state = start_state(cfg, run_dir / "checkpoints", module, optimizer, scheduler, scaler, train_set.transform, dist, ema)
    dist.on_main("creating the run folder", lambda: _make_folder(run_dir / "checkpoints"))
    if state.epoch == 0 and state.global_step == 0:  # a fresh run: no epoch weights of a run it replaces survive
        dist.on_main("removing old epoch weights", lambda: remove_epoch_weights(run_dir / "checkpoints"))
    # every rank starts from the same weights (rank 0's, broadcast by DDP); no unused parameters to look for
    model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else module
    loader_seed = torch.Generator()
    train_loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers, worker_init_fn=seed_worker,
                              generator=loader_seed, pin_memory=device.type == "cuda")
    val_loader = volume_loader(val_set, cfg.data.batch_size, cfg.data.num_workers, pin_memory=device.type == "cuda",
                               rank=dist.rank, world_size=dist.world_size)
    logger_args = (cfg.logger.project, cfg.exp_name, OmegaConf.to_container(cfg, resolve=True), cfg.logger.entity, cfg.logger.tags)
    logger = dist.on_main("starting the logger", lambda: RunLogger(run_dir, cfg.logger.mode, *logger_args))
    logger = logger or RunLogger(run_dir, "disabled", *logger_args)  # the other ranks log nothing
    modules = {"model": module, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "transform": train_set.transform,
               "ema": ema}
    checkpointer = Checkpointer(cfg, dist, device, run_dir, state, modules)
    log.info("training %s: %d train / %d val slices, %s, device %s, %d process(es)", cfg.exp_name, len(train_set),
             len(val_set), getattr(module, "cascade_counts", type(module).__name__), device, dist.world_size)
    return Run(cfg, dist, device, run_dir, module, model, ema, optimizer, scheduler, interval, scaler, build_loss(cfg.loss), train_set,
               val_set, sampler, train_loader, val_loader, loader_seed, logger, state, checkpointer,
               settings.get("figures", True) and dist.is_main, progress)


def _train(cfg: DictConfig, dist: Distributed, device: torch.device, progress: bool) -> TrainState:
    if not dist.is_main:
        log.setLevel(logging.WARNING)  # rank 0 reports; the others only warn
    configure_determinism(cfg.training.deterministic)
    seed_everything(cfg.seed)
    run = _build_run(cfg, dist, device, progress)
    stop_signal = None
    try:
        with StopOnSignal() as stop:
            try:
                for epoch in range(run.state.epoch, cfg.training.epochs):
                    if _epoch(run, epoch, stop):
                        break
            except Interrupted as interrupt:
                run.checkpointer.save_last()  # inside StopOnSignal: a second signal cannot cut it short; every rank is here
                log.warning("stopped by %s: resumable checkpoint %s (epoch %d, batch %d); continue with training.resume=true",
                            interrupt, run.checkpointer.checkpoint_dir / "model.pt", run.state.epoch, run.state.batches_done)
                stop_signal = interrupt.signum
    finally:
        run.logger.finish()
    if stop_signal is not None:
        sys.exit(128 + stop_signal)
    if dist.enabled:
        for name, network in (("weights", run.module), ("EMA weights", run.ema.module if run.ema else None)):
            if network is None:
                continue
            digests = set(dist.gather(_weights_digest(network)))
            if len(digests) != 1:
                raise RuntimeError(f"ranks ended with different {name} ({len(digests)} distinct digests)")
            log.info("%s identical on all %d ranks", name, dist.world_size)
    log.info("best %s %s at epoch %s; checkpoints in %s", cfg.training.select_best_by, run.state.best_metric, run.state.best_epoch,
             run.checkpointer.checkpoint_dir)
    return run.state


def _epoch(run: Run, epoch: int, stop: StopOnSignal) -> bool:
    """Train one epoch, validate when due, save, draw and log; True when early stopping ends the run."""
    settings = run.cfg.training
    metrics = _train_epoch(run, epoch, stop)
    selection_value = metrics["train/loss"] if settings.select_best_by == "train_loss" else None
    drawn = {}  # W&B key -> PNG of this epoch
    if not settings.train_on_train_and_val and ((epoch + 1) % settings.val_every == 0 or epoch + 1 == settings.epochs):
        validation = _validate_epoch(run, epoch, metrics, drawn)
        if settings.select_best_by != "train_loss":
            selection_value = validation[settings.select_best_by]
    run.checkpointer.end_epoch(epoch, selection_value)
    if run.figures:
        state = run.state
        drawn["figures/curves"] = _draw("curves", draw_curves, state.train_loss_log, state.val_loss_log, state.val_ssim_log,
                                        state.val_zero_filled_ssim_log, run.run_dir / "figures" / "curves.png", run.cfg.exp_name)
    run.logger.log_figures(drawn, epoch)
    run.logger.log({**metrics, "best/" + settings.select_best_by: run.state.best_metric}, epoch)
    patience = settings.early_stopping_patience
    if patience and run.state.validations_since_best >= patience:
        log.info("early stopping after epoch %d: no val SSIM improvement in %d validations", epoch, patience)
        return True
    return False


def _train_epoch(run: Run, epoch: int, stop: StopOnSignal) -> dict[str, float]:
    """The optimizer steps of ``epoch`` (from where a resume left it); returns its metrics."""
    state, settings = run.state, run.cfg.training
    run.sampler.set_epoch(epoch, start=state.batches_done)
    run.train_set.set_epoch(epoch)
    run.loader_seed.manual_seed(run.cfg.seed * 1000 + epoch)  # worker seeds depend on (seed, epoch) only

    def on_step(stepped: bool) -> None:
        if stepped and run.ema is not None:  # before any checkpoint of this step
            run.ema.update(run.module)
        if stepped and run.interval == "step" and not is_plateau(run.scheduler):
            run.scheduler.step()
        run.checkpointer.after_step(stepped)
        kill_point_for_tests(state.global_step, run.dist.rank)

    started, slices_before = time.perf_counter(), state.epoch_slices
    train_loss = train_one_epoch(run.model, run.train_loader, run.sampler.batches_per_epoch(), run.loss_fn, run.optimizer, on_step,
                                 state, settings, run.device, stop, run.progress, run.scaler, run.dist)
    log.info("epoch %d trained: %d samples in %.1f s", epoch, state.epoch_slices - slices_before, time.perf_counter() - started)
    metrics = {"train/loss": train_loss, "lr": run.optimizer.param_groups[0]["lr"], "train/skipped_steps": state.skipped_steps}
    if hasattr(run.train_set.transform, "probability"):
        metrics["train/augment_probability"] = run.train_set.transform.probability
    if run.interval == "epoch" and not is_plateau(run.scheduler):
        run.scheduler.step()
    state.train_loss_log.append([epoch, train_loss])
    return metrics


def _validate_epoch(run: Run, epoch: int, metrics: dict[str, float], drawn: dict[str, Path | None]) -> dict[str, float]:
    """Validate after ``epoch``: logs, figure, reconstructions, the plateau schedule and the early-stopping count
    (both on the selection metric, the 2025 Total unless ``val_total_2026`` selects); adds to ``metrics`` and
    ``drawn`` and returns the validation metrics that can select the best model."""
    settings, state = run.cfg.training, run.state
    validated = run.ema.module if run.ema is not None else run.module  # the EMA's weights are the ones kept as best
    result = validate(validated, run.val_loader, run.loss_fn, run.device, settings.log_images, run.progress, dist=run.dist,
                      keep_outputs=settings.save_val_reconstructions, figure_rows=settings.get("figures", True))
    if settings.save_val_reconstructions:
        run.dist.on_main("writing reconstructions_val", lambda: _write_reconstructions(run.run_dir / "reconstructions_val", run.val_set, result.outputs))
    state.val_loss_log.append([epoch, result.loss])
    state.val_ssim_log.append([epoch, result.ssim])
    state.val_zero_filled_ssim_log.append([epoch, result.zero_filled_ssim])
    state.val_total_2026_log.append([epoch, result.total_2026])
    if run.figures and result.figure_rows:
        drawn["figures/validation"] = _draw("val", draw_comparison_grid, result.figure_rows, run.run_dir / "figures" / f"val_epoch{epoch}.png",
                                            f"{run.cfg.exp_name}: validation after epoch {epoch}")
    metrics.update({"val/loss": result.loss, "val/ssim": result.ssim, "val/ssim_zero_filled": result.zero_filled_ssim,
                    "val/ssim_full": result.ssim_full, "val/ssim_bbox": result.ssim_bbox, "val/total_2026": result.total_2026,
                    "val/boxes": result.boxes})
    metrics.update({f"val/ssim_{group}": value for group, value in result.group_ssim.items()})
    run.logger.log_images(result.images, epoch)
    selection = {"val_ssim": result.ssim, "val_total_2026": result.total_2026}
    watched = "val_total_2026" if settings.select_best_by == "val_total_2026" else "val_ssim"
    if is_plateau(run.scheduler):
        run.scheduler.step(selection[watched])
    history = state.val_total_2026_log if watched == "val_total_2026" else state.val_ssim_log
    best = max((value for _, value in history[:-1]), default=-math.inf)
    improved = selection[watched] > best + settings.early_stopping_min_delta
    state.validations_since_best = 0 if improved else state.validations_since_best + 1
    return selection
