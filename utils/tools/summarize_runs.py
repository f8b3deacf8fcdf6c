"""One row per training run below a results folder: the table, CSV and validation curves of a sweep.

    python3 final_main.py -m --config-name=demo optimizer.lr=1e-3,3e-4     # jobs in ../result/demo/<job>/
    python -m utils.tools.summarize_runs ../result/demo [--csv FILE] [--png FILE]
    python -m utils.tools.summarize_runs ../result --match 'demo_wandb_*'    # a W&B sweep's runs

A run is a folder that holds ``checkpoints/model.pt``, a loss log or ``hydra/<time>/run.json``, at any depth
below RESULT_DIR (RESULT_DIR itself may be one; ``--match GLOB`` keeps the runs whose path below it matches).
Its invocations are those whose ``run.json`` says they wrote ``checkpoints/model.pt`` (all of them when none
did: a refused re-run does not count). For each run it prints, and writes as CSV (default
``RESULT_DIR/runs_summary.csv``): its path below RESULT_DIR, the status and error of its latest invocation, the
best validation Total (the leaderboard's ``(acc4 + acc8) / 2`` masked SSIM, from ``val_ssim_log.npy``) and its
epoch (0-based, as in the logs), the epochs trained, the wall time of its invocations together and the
overrides of the latest one. Rows go best Total first. The validation curves of all runs are drawn into one
PNG (default ``RESULT_DIR/runs_val_total.png``). Both files are written atomically.
Exit status 0, or 2 on a user error (no runs, an unreadable log or record).
"""
from __future__ import annotations

import csv
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from omegaconf import OmegaConf

from utils.atomic import atomic_path
from utils.errors import ArgumentParser, UserInputError, file_error, run_cli
from utils.tools.compare_runs import LOGS, load_log
from utils.training.sweep import RUN_RECORD, read_run_record

__all__ = ["RunSummary", "find_runs", "summarize_run", "write_csv", "plot_curves", "main"]

CSV_COLUMNS = ("run", "status", "best_val_total", "best_epoch", "epochs", "wall_s", "overrides", "error")
NOT_RUNS = {"hydra", ".hydra", "wandb", "checkpoints", "figures", "reconstructions_val", "reconstructions_leaderboard"}


@dataclass
class RunSummary:
    """What one run folder says about itself (None: not recorded)."""

    run: str                                  # its path below RESULT_DIR ('.' for RESULT_DIR itself)
    status: str | None = None                 # of the latest invocation: completed, failed, interrupted
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    wall_s: float | None = None               # all invocations together
    epochs: int | None = None                 # rows of train_loss_log.npy
    best_val_total: float | None = None
    best_epoch: int | None = None
    val_curve: np.ndarray | None = None       # (epoch, Total) rows


def is_run(folder: Path) -> bool:
    return ((folder / "checkpoints" / "model.pt").is_file() or any((folder / name).is_file() for name, _ in LOGS)
            or any(folder.glob(f"hydra/*/{RUN_RECORD}")))


def find_runs(root: Path) -> list[Path]:
    """Every run folder at or below ``root``, in path order (not inside checkpoints/, hydra/, wandb/ ...)."""
    runs = []
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name not in NOT_RUNS)
        if is_run(Path(folder)):
            runs.append(Path(folder))
    return runs


def _latest_overrides_file(run: Path) -> list[str]:
    """Overrides of the latest Hydra folder without a run.json (runs made before run records existed)."""
    files = sorted(run.glob("hydra/*/.hydra/overrides.yaml"))
    if not files:
        return []
    try:
        return [str(line) for line in OmegaConf.load(files[-1])]
    except Exception:  # noqa: BLE001 - any parse error of a file the user may have edited
        raise file_error(files[-1], "is not a readable Hydra overrides list") from None


def summarize_run(run: Path, label: str) -> RunSummary:
    summary = RunSummary(run=label)
    records = sorted((read_run_record(path) | {"_path": str(path)} for path in run.glob(f"hydra/*/{RUN_RECORD}")),
                     key=lambda record: (str(record.get("started")), record["_path"]))
    # the invocations that wrote the run (a refused re-run, or one that failed before a checkpoint, did not)
    records = [record for record in records if record.get("wrote_checkpoint")] or records
    if records:
        latest = records[-1]
        summary.status, summary.error = latest.get("status"), latest.get("error")
        summary.overrides = [str(line) for line in latest.get("overrides") or []]
        summary.wall_s = sum(float(record.get("wall_s") or 0.0) for record in records)
    else:
        summary.overrides = _latest_overrides_file(run)
    train_log = load_log(run, "train_loss_log.npy")
    summary.epochs = None if train_log is None else len(train_log)
    val_log = load_log(run, "val_ssim_log.npy")
    if val_log is not None and len(val_log):
        summary.val_curve = val_log
        finite = np.flatnonzero(np.isfinite(val_log[:, 1]))
        if finite.size:
            best = finite[np.argmax(val_log[finite, 1])]
            summary.best_val_total, summary.best_epoch = float(val_log[best, 1]), int(val_log[best, 0])
    return summary


def _sort_key(summary: RunSummary) -> tuple:
    return (summary.best_val_total is None, -(summary.best_val_total or 0.0), summary.run)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def format_table(summaries: Sequence[RunSummary]) -> list[str]:
    """The printed table: one line per run, then one line per failed run's error.

    Overrides that every run of several has (a sweep's data.root=, training.epochs= ...) are printed once above
    the table, and each row lists only its own.
    """
    shared = set.intersection(*(set(s.overrides) for s in summaries)) if len(summaries) > 1 else set()
    header = ("run", "status", "best Total", "epoch", "epochs", "time", "overrides")
    rows = [(s.run, s.status or "-", "-" if s.best_val_total is None else f"{s.best_val_total:.4f}",
             "-" if s.best_epoch is None else str(s.best_epoch), "-" if s.epochs is None else str(s.epochs),
             _duration(s.wall_s), " ".join(line for line in s.overrides if line not in shared) or "-") for s in summaries]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [f"overrides of every run: {' '.join(line for line in summaries[0].overrides if line in shared)}"] if shared else []
    lines += ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip() for row in [header, *rows]]
    lines += [f"{s.run}: {s.status}: {s.error}" for s in summaries if s.error]
    return lines


def write_csv(summaries: Sequence[RunSummary], path: Path) -> None:
    """CSV_COLUMNS, one row per run (empty cells where nothing is recorded; overrides space-separated)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for s in summaries:
            writer.writerow([s.run, s.status or "", "" if s.best_val_total is None else repr(s.best_val_total),
                             "" if s.best_epoch is None else s.best_epoch, "" if s.epochs is None else s.epochs,
                             "" if s.wall_s is None else round(s.wall_s, 3), " ".join(s.overrides), s.error or ""])


def plot_curves(summaries: Sequence[RunSummary], path: Path, title: str) -> bool:
    """Every run's validation Total per epoch in one PNG (Agg, no display); False when no run has one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: slow, and only this needs it
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = [s for s in summaries if s.val_curve is not None and np.isfinite(s.val_curve[:, 1]).any()]
    if not curves:
        return False
    figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for s in curves:
        label = s.run if len(s.run) <= 48 else s.run[:45] + "..."
        (line,) = axes.plot(s.val_curve[:, 0], s.val_curve[:, 1], marker="o", markersize=3, label=label)
        if s.best_epoch is not None:
            axes.plot([s.best_epoch], [s.best_val_total], marker="*", markersize=11, color=line.get_color())
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation Total: (SSIM acc4 + SSIM acc8) / 2")
    axes.set_title(f"{title}: {len(curves)} run(s), * = best")
    epochs = np.concatenate([s.val_curve[:, 0] for s in curves])
    axes.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best", ncol=1 if len(curves) <= 12 else 2)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return True


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m utils.tools.summarize_runs", description=__doc__.splitlines()[0])
    parser.add_argument("result_dir", type=Path, help="a sweep's folder (result/<exp_name>) or any folder of runs")
    parser.add_argument("--csv", type=Path, help="CSV file to write (default RESULT_DIR/runs_summary.csv)")
    parser.add_argument("--png", type=Path, help="PNG of the validation curves (default RESULT_DIR/runs_val_total.png)")
    parser.add_argument("--match", metavar="GLOB", help="only runs whose path below RESULT_DIR matches, e.g. 'demo_wandb_*'")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    root = args.result_dir
    if not root.is_dir():
        raise UserInputError(f"{root}: results folder not found")
    runs = {os.path.relpath(run, root): run for run in find_runs(root)}
    if args.match:
        runs = {label: run for label, run in runs.items() if fnmatch.fnmatchcase(label, args.match)}
    if not runs:
        matching = f" matching {args.match!r}" if args.match else ""
        raise UserInputError(f"{root}: no training runs{matching} below it (folders with checkpoints/model.pt, a loss log or hydra/*/{RUN_RECORD})")
    summaries = sorted((summarize_run(run, label) for label, run in runs.items()), key=_sort_key)
    print("\n".join(format_table(summaries)))
    csv_path = args.csv or root / "runs_summary.csv"
    png_path = args.png or root / "runs_val_total.png"
    try:
        write_csv(summaries, csv_path)
        print(f"wrote {csv_path}")
        if plot_curves(summaries, png_path, root.resolve().name):
            print(f"wrote {png_path}")
        else:
            print("no validation curves to plot")
    except OSError as err:
        raise UserInputError(f"{err.filename or root}: cannot write the summary ({err.strerror})") from None
    return 0


if __name__ == "__main__":
    run_cli(main)
