"""PNG figures of a run and of a leaderboard score: slice comparison grids, training curves, SSIM histograms.

Drawn with matplotlib's Agg canvas on a bare :class:`matplotlib.figure.Figure`: pyplot is never imported, so
no display is opened and no global backend is switched (a notebook importing this keeps its own). matplotlib
itself is imported lazily, on the first drawing. Every figure has a fixed pixel size (see the ``*_PX``
constants and :func:`comparison_grid_size`; no ``bbox_inches="tight"``) and is written atomically.

Images are shown in the target's units on a grey scale from 0 to the volume ``max`` (the SSIM data_range);
|error| = |reconstruction - target| is shown on the same scale times a round factor (1, 2, 5, 10, ...) that
is printed in the panel title.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from utils.atomic import atomic_path
from utils.errors import UserInputError

__all__ = [
    "DPI",
    "PANEL_PX",
    "HEADER_PX",
    "CURVES_PX",
    "HISTOGRAM_PANEL_PX",
    "ComparisonRow",
    "require_matplotlib",
    "comparison_grid_size",
    "error_scale",
    "draw_comparison_grid",
    "draw_curves",
    "draw_ssim_histograms",
]

DPI = 100
PANEL_PX = (325, 300)  # (height, width) of one image panel with its two-line title
HEADER_PX = 50  # the figure title above a grid
CURVES_PX = (400, 1000)
HISTOGRAM_PANEL_PX = (400, 500)
_ERROR_SCALES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass
class ComparisonRow:
    """One slice of a comparison grid; images (384, 384) in the target's units.

    ``zero_filled`` (and its SSIM) is optional: a grid shows that column when any row has it.
    """

    label: str  # e.g. "brain_acc4 | brain_acc4_86.h5 slice 2"
    reconstruction: np.ndarray
    target: np.ndarray
    max_value: float  # the volume max: top of the grey scale and SSIM data_range
    ssim: float
    zero_filled: np.ndarray | None = None
    zero_filled_ssim: float | None = None


def require_matplotlib(option: str) -> None:
    """Fail early, in one line, when figures are asked for and matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserInputError(f"{option} needs matplotlib: pip install -r requirements.txt (or turn the figures off)") from None


def _new_figure(height_px: int, width_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas: rendering without a display
    return figure


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    return path


def comparison_grid_size(num_rows: int, num_columns: int) -> tuple[int, int]:
    """(height, width) in pixels of a comparison grid."""
    return HEADER_PX + num_rows * PANEL_PX[0], num_columns * PANEL_PX[1]


def error_scale(error: np.ndarray, max_value: float) -> int:
    """The largest round factor that keeps the 99th percentile of ``error / max_value`` times it within 1."""
    level = float(np.percentile(np.abs(error), 99)) / max_value if max_value > 0 else 0.0
    fitting = [scale for scale in _ERROR_SCALES if level * scale <= 1.0]
    return fitting[-1] if fitting else 1


def _image_panel(axes, image: np.ndarray, vmax: float, title: str, cmap: str = "gray") -> None:
    axes.imshow(image, cmap=cmap, vmin=0.0, vmax=vmax)
    axes.set_title(title, fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])


def draw_comparison_grid(rows: Sequence[ComparisonRow], path: str | Path, title: str = "") -> Path:
    """One row per slice: [zero-filled |] reconstruction | target | |error| (scaled), SSIM in the titles.

    Writes a PNG of :func:`comparison_grid_size` pixels to ``path`` (atomically) and returns the path.
    """
    if not rows:
        raise ValueError("a comparison grid needs at least one row")
    with_zero_filled = any(row.zero_filled is not None for row in rows)
    columns = 4 if with_zero_filled else 3
    figure = _new_figure(*comparison_grid_size(len(rows), columns))
    figure.suptitle(title, fontsize=11)
    grid = figure.subplots(len(rows), columns, squeeze=False)
    for axes_row, row in zip(grid, rows):
        top = row.max_value if row.max_value > 0 else float(np.max(row.target)) or 1.0
        panels = list(axes_row)
        if with_zero_filled:
            zero_filled_axes = panels.pop(0)
            if row.zero_filled is None:
                zero_filled_axes.axis("off")
            else:
                _image_panel(zero_filled_axes, row.zero_filled, top, f"zero-filled\nSSIM {row.zero_filled_ssim:.4f}")
        error = np.abs(row.reconstruction - row.target)
        scale = error_scale(error, top)
        _image_panel(panels[0], row.reconstruction, top, f"reconstruction\nSSIM {row.ssim:.4f}")
        _image_panel(panels[1], row.target, top, f"target\nmax {top:.3g}")
        _image_panel(panels[2], np.clip(error * scale / top, 0.0, 1.0), 1.0, f"|error| x{scale}\n(of max)", cmap="magma")
        axes_row[0].set_ylabel(row.label, fontsize=8)
    return _save(figure, path)


def _history(rows: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def draw_curves(
    train_loss: Sequence[Sequence[float]],
    val_loss: Sequence[Sequence[float]],
    val_ssim: Sequence[Sequence[float]],
    zero_filled_ssim: Sequence[Sequence[float]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Losses (train, val) and the validation Total against the zero-filled baseline per epoch.

    Every history is (epoch, value) rows, as in ``train_loss_log.npy``. Writes a ``CURVES_PX`` PNG.
    """
    from matplotlib.ticker import MaxNLocator

    figure = _new_figure(*CURVES_PX)
    figure.suptitle(title, fontsize=11)
    loss_axes, ssim_axes = figure.subplots(1, 2)
    for rows, label in ((train_loss, "train loss"), (val_loss, "val loss")):
        if len(rows):
            loss_axes.plot(*_history(rows), "o-", label=label, markersize=4)
    for rows, label, style in ((val_ssim, "val SSIM (leaderboard Total)", "o-"), (zero_filled_ssim, "zero-filled input", "s--")):
        if len(rows):
            ssim_axes.plot(*_history(rows), style, label=label, markersize=4)
    if not len(val_ssim):
        ssim_axes.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ssim_axes.transAxes)
    for axes, ylabel in ((loss_axes, "loss per slice"), (ssim_axes, "SSIM")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    return _save(figure, path)


def draw_ssim_histograms(panels: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = "") -> Path:
    """Per-slice SSIM histograms: one panel per key (e.g. "acc4"), stacked by series (e.g. anatomy).

    Every panel shares one set of bins; a dashed line marks the panel's mean over all its slices.
    Writes a PNG of ``HISTOGRAM_PANEL_PX`` per panel, side by side.
    """
    if not panels:
        raise ValueError("an SSIM histogram needs at least one panel")
    from matplotlib.ticker import MaxNLocator

    values = np.concatenate([np.asarray(series, dtype=np.float64) for panel in panels.values() for series in panel.values()] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if high - low < 1e-3:
        low, high = low - 5e-3, high + 5e-3
    bins = np.linspace(low, high, int(np.clip(math.sqrt(values.size) * 2, 5, 40)) + 1)
    figure = _new_figure(HISTOGRAM_PANEL_PX[0], HISTOGRAM_PANEL_PX[1] * len(panels))
    figure.suptitle(title, fontsize=11)
    for axes, (name, panel) in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels.items()):
        labelled = {f"{label} ({len(series)})": np.asarray(series, dtype=np.float64) for label, series in panel.items() if len(series)}
        if labelled:
            axes.hist(list(labelled.values()), bins=bins, stacked=True, label=list(labelled))
            mean = float(np.mean(np.concatenate(list(labelled.values()))))
            axes.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.4f}")
            axes.legend(fontsize=8)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # slice counts
        axes.set_title(f"{name}: {sum(len(series) for series in panel.values())} slices", fontsize=10)
        axes.set_xlabel("slice SSIM")
        axes.set_ylabel("slices")
        axes.grid(alpha=0.3)
    return _save(figure, path)
