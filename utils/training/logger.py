"""What a run records: numpy loss logs (always), a plain text log (always), and Weights & Biases (optional).

- ``train_loss_log.npy`` / ``val_loss_log.npy`` / ``val_ssim_log.npy``: float64 arrays of (epoch, value) rows,
  rewritten atomically after every epoch.
- ``figures/*.png`` (:mod:`utils.figures`, drawn by the trainer): to W&B as images too.
- The text log is Python ``logging``; ``final_main.py`` (Hydra) writes it to the run's ``hydra/<time>/`` folder.
- W&B ``mode``: ``offline`` (default; files under the run folder, no network, never a prompt), ``online``
  (needs ``WANDB_API_KEY`` or ``wandb login``; refused otherwise instead of prompting) or ``disabled``.
"""
from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from utils.atomic import save_npy
from utils.errors import UserInputError

__all__ = ["LOGGER_MODES", "RunLogger", "write_history"]

LOGGER_MODES = ("online", "offline", "disabled")
log = logging.getLogger("train")


def write_history(path: Path, rows: Sequence[Sequence[float]]) -> None:
    """Save (epoch, value) rows as a float64 (N, 2) array, atomically."""
    save_npy(path, np.asarray(rows, dtype=np.float64).reshape(-1, 2))


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class RunLogger:
    """Metrics and images to W&B (unless disabled) and to the text log."""

    def __init__(self, run_dir: Path, mode: str, project: str, run_name: str, config: dict[str, Any], entity: str | None = None, tags: Sequence[str] = ()):
        if mode not in LOGGER_MODES:
            raise UserInputError(f"logger.mode must be one of {', '.join(LOGGER_MODES)}, got {mode!r}")
        self.run = None
        if mode == "disabled":
            return
        if mode == "online" and not _has_wandb_credentials():
            raise UserInputError(
                "logger.mode=online needs W&B credentials (WANDB_API_KEY or `wandb login`); use logger.mode=offline to log locally"
            )
        import wandb  # imported only when used: it is slow to import

        os.environ.setdefault("WANDB_SILENT", "true")
        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=run_name,
            dir=str(run_dir),
            mode=mode,
            config=config,
            tags=list(tags),
            settings=wandb.Settings(console="off"),
        )

    def log(self, metrics: dict[str, float | None], step: int) -> None:
        """Metrics at ``step`` (the epoch): to W&B and one line of the text log. None (e.g. no best value
        before the first validation with ``training.val_every`` > 1) is printed as such and not sent."""
        log.info("epoch %d: %s", step, ", ".join(f"{key} {'None' if value is None else f'{value:.5g}'}" for key, value in metrics.items()))
        self._send("metrics", step, lambda: {key: value for key, value in metrics.items() if value is not None})

    def log_images(self, images: Sequence[tuple[str, np.ndarray]], step: int) -> None:
        """Validation images (caption, (H, W) array in [0, 1]) to W&B."""
        if images:
            self._send("images", step, lambda: {"val/images": [self._wandb.Image(image, caption=caption) for caption, image in images]})

    def log_figures(self, figures: Mapping[str, Path | None], step: int) -> None:
        """PNG files already written under the run folder (``figures/``), as ``wandb.Image`` under their keys."""
        self._send("figures", step, lambda: {key: self._wandb.Image(str(path), caption=Path(path).name)
                                             for key, path in figures.items() if path is not None})

    def _send(self, what: str, step: int, payload) -> None:
        """``run.log(payload(), step=step)``; a failure turns W&B off with one warning and never raises.

        Under DDP only rank 0 logs: an exception here would end rank 0 alone, mid-epoch, while the other ranks
        wait in their next collective. W&B is a copy of what the text log, the loss logs and ``figures/``
        already hold, so the run goes on without it.
        """
        if self.run is None:
            return
        try:
            entries = payload()
            if entries:
                self.run.log(entries, step=step)
        except Exception as err:  # noqa: BLE001 - wandb raises many kinds (its service gone, disk, network)
            detail = str(err).strip().splitlines()
            log.warning("W&B logging of %s failed at epoch %d (%s%s); W&B is off for the rest of this run, the text log, "
                        "loss logs and figures/ go on", what, step, type(err).__name__, f": {detail[0]}" if detail else "")
            self._close_quietly()

    def _close_quietly(self) -> None:
        run, self.run = self.run, None
        try:
            run.finish(exit_code=1)
        except Exception:  # noqa: BLE001 - already failing; nothing more to report
            pass

    def finish(self) -> None:
        if self.run is not None:
            try:
                self.run.finish()
            except Exception as err:  # noqa: BLE001 - the run itself is done and saved; say so, do not fail it
                log.warning("W&B could not finish its run (%s: %s); the run's own files are complete", type(err).__name__, err)
            self.run = None
