"""Hydra sweeps (``final_main.py -m``): one run folder per job, failures that do not end the sweep, run records.

A single run trains in ``result_root/exp_name/``. Under ``-m`` job ``i`` trains in
``result_root/exp_name/<job>/``, where ``<job>`` is the job's swept overrides as Hydra's ``override_dirname``
writes them (sorted, ``key=value`` joined by ``,``: ``optimizer.lr=0.001``), made safe for a folder name by
:func:`sweep_job_name`; ``job<i>`` when nothing is swept. ``configs/train.yaml`` points Hydra's sweep folder at
the same place, so each job folder holds its own ``hydra/<time>/`` (config, overrides, text log), as a single
run does. The job runs with ``result_root=<result_root>/<exp_name>`` and ``exp_name=<job>`` (stored so in its
checkpoints), so one job alone resumes with those two overrides, and the whole sweep with ``-m ...
training.resume=true``. The "a folder that holds a run is refused" rule holds per job folder.

A job that fails (a config value it sweeps, a data error, a crash) is logged in one line naming the job and
recorded; the sweep goes on, and the process then exits non-zero (see :class:`SweepJobs`).

Every invocation writes ``hydra/<time>/run.json``: status (completed, failed, interrupted), error, overrides,
wall time, and whether it wrote the run's ``checkpoints/model.pt``. ``python -m utils.tools.summarize_runs``
reads it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from utils.atomic import atomic_path
from utils.errors import EXIT_USER_ERROR, UserInputError, debug_requested, one_line
from utils.training.build import check_config

__all__ = ["sweep_job_name", "sweep_naming_overrides", "Invocation", "current_invocation", "job_config",
           "SweepJobs", "RUN_RECORD", "read_run_record"]

log = logging.getLogger("train")
RUN_RECORD = "run.json"              # in the invocation's hydra/<time>/ folder
LAST_CHECKPOINT = Path("checkpoints") / "model.pt"
JOB_NAME_MAX = 120                   # characters of a job folder name; longer ones are cut and end in a hash
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")
_EXCLUDE_KEY = "hydra.job.config.override_dirname.exclude_keys"


def sweep_job_name(override_dirname: str, job_num: int) -> str:
    """The folder name of a sweep job: its ``override_dirname``, sanitised; ``job<num>`` when that is empty.

    Characters other than letters, digits and ``. _ = , + -`` become ``_`` (a path value never nests folders;
    ``[1,1,1]`` becomes ``_1,1,1_``); a name longer than 120 characters keeps its first 111 and ends in ``_``
    and 8 hex digits of the SHA-1 of the whole. Deterministic: the same overrides give the same folder.
    """
    text = str(override_dirname or "")
    if not text:
        return f"job{int(job_num)}"
    name = _UNSAFE.sub("_", text)
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > JOB_NAME_MAX:
        name = f"{name[:JOB_NAME_MAX - 9]}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return name


# configs/train.yaml names Hydra's per-job folder with it: ${sweep_job_name:${hydra.job.override_dirname},${hydra.job.num}}
OmegaConf.register_new_resolver("sweep_job_name", sweep_job_name, replace=True)


def sweep_naming_overrides(argv: Sequence[str]) -> list[str]:
    """Under ``-m``, the Hydra override that leaves every override that is not swept out of the job names.

    ``-m data.root=/x optimizer.lr=1e-3,3e-4`` names its jobs ``optimizer.lr=0.001`` and ``optimizer.lr=0.0003``
    (Hydra's ``override_dirname`` would hold ``data.root=/x`` too). Nothing is added outside ``-m``, when the
    user sets the exclusion list, or when the overrides do not parse (Hydra then reports them).
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args, _ = get_args_parser().parse_known_args(list(argv))
    if not args.multirun or any(line.lstrip("+~").startswith(_EXCLUDE_KEY) for line in args.overrides):
        return []
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException:
        return []
    fixed = sorted({o.key_or_group for o in overrides if not o.is_hydra_override() and not o.is_sweep_override()})
    return [f"{_EXCLUDE_KEY}=[{','.join(repr(key) for key in fixed)}]"] if fixed else []


@dataclass(frozen=True)
class Invocation:
    """What Hydra knows about the running invocation."""

    output_dir: Path | None          # its hydra/<time>/ folder; None where Hydra writes none (other DDP ranks)
    overrides: list[str]             # the task overrides, as typed (a sweep job: its expanded values)
    job_num: int | None = None       # a sweep job's number, else None
    job_name: str | None = None      # a sweep job's folder name, else None

    @property
    def in_sweep(self) -> bool:
        return self.job_name is not None

    @property
    def label(self) -> str:
        return f"sweep job #{self.job_num} ({self.job_name})" if self.in_sweep else "run"


def current_invocation() -> Invocation:
    """The invocation ``@hydra.main`` is running: its Hydra folder, overrides and, under ``-m``, job name."""
    hydra_cfg = HydraConfig.get()
    writes = hydra_cfg.output_subdir is not None and os.environ.get("RANK", "0") == "0"
    output_dir = Path(hydra_cfg.runtime.output_dir) if writes else None
    overrides = [str(line) for line in hydra_cfg.overrides.task]
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return Invocation(output_dir, overrides)
    num = int(hydra_cfg.job.num)
    return Invocation(output_dir, overrides, num, sweep_job_name(hydra_cfg.job.override_dirname, num))


def job_config(cfg: DictConfig, job_name: str) -> DictConfig:
    """``cfg`` with the sweep job's run folder: ``result_root=<result_root>/<exp_name>``, ``exp_name=<job>``."""
    cfg = cfg.copy()
    parent = str(Path(cfg.result_root) / cfg.exp_name)
    cfg.result_root, cfg.exp_name = parent, job_name
    return cfg


def _modified(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a run.json; failing to (a full disk) is a warning, never an error hiding the run's own."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(record, indent=2) + "\n")
    except OSError as err:
        log.warning("%s: cannot write the run record (%s)", path, err.strerror)


def read_run_record(path: Path) -> dict[str, Any]:
    """A ``run.json``; a file that is not one is a UserInputError naming it."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        raise UserInputError(f"{path}: is not a readable run record (JSON)") from None
    if not isinstance(record, dict) or "status" not in record:
        raise UserInputError(f"{path}: is not a run record (no 'status')")
    return record


def _error_line(err: BaseException) -> str:
    """``Type: first line of the message`` for an unexpected exception (its traceback goes to the log)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


@dataclass
class JobFailure:
    label: str
    error: str
    user_error: bool


@dataclass
class SweepJobs:
    """Runs the invocations of one ``final_main.py`` process and remembers the sweep jobs that failed."""

    jobs: int = 0
    failures: list[JobFailure] = field(default_factory=list)

    def run(self, cfg: DictConfig, invocation: Invocation, train: Callable[[DictConfig], Any]) -> None:
        """Train ``cfg`` and write the invocation's ``run.json``.

        A single run lets every error through (final_main reports it). A sweep job's error is logged in one
        line (a crash with its traceback), recorded and swallowed, so Hydra starts the next job; with
        ``MRI_DEBUG=1`` it goes to Hydra instead, which prints the first failure's traceback after the last job.
        Ctrl-C and SIGTERM (a SystemExit) end the whole sweep.
        """
        self.jobs += invocation.in_sweep
        started_at, started = datetime.now().astimezone(), time.perf_counter()
        status, error, run_dir, checkpoint_before = "failed", None, None, None
        try:
            job_cfg = job_config(cfg, invocation.job_name) if invocation.in_sweep else cfg
            run_dir = Path(job_cfg.result_root) / job_cfg.exp_name
            checkpoint_before = _modified(run_dir / LAST_CHECKPOINT)
            check_config(cfg)  # a sweep's exp_name too, before it becomes the parent of the job folders
            train(job_cfg)
            status = "completed"
        except Exception as err:
            user_error = isinstance(err, UserInputError)
            error = one_line(err) if user_error else _error_line(err)
            if not invocation.in_sweep or debug_requested():
                raise
            log.error("%s failed: %s", invocation.label, error, exc_info=not user_error)
            self.failures.append(JobFailure(invocation.label, error, user_error))
        except BaseException:
            status = "interrupted"
            raise
        finally:
            if invocation.output_dir is not None:
                _write_record(invocation.output_dir / RUN_RECORD, {
                    "status": status, "error": error, "overrides": invocation.overrides,
                    "sweep_job": invocation.job_name, "job_num": invocation.job_num,
                    "run_dir": str(run_dir.resolve()) if run_dir is not None else None,
                    # False for an invocation that left the run as it was (refused, or failed before a checkpoint)
                    "wrote_checkpoint": run_dir is not None and _modified(run_dir / LAST_CHECKPOINT) not in (None, checkpoint_before),
                    "started": started_at.isoformat(timespec="seconds"),
                    "wall_s": round(time.perf_counter() - started, 3),
                })

    def exit_status(self) -> int:
        """0; with failed jobs, one line each on stderr and 2 (all were user errors, as a single run) or 1."""
        if not self.failures:
            return 0
        print(f"error: {len(self.failures)} of {self.jobs} sweep jobs failed (logs: <job folder>/hydra/<time>/):", file=sys.stderr)
        for failure in self.failures:
            print(f"  {failure.label}: {failure.error}", file=sys.stderr)
        return EXIT_USER_ERROR if all(failure.user_error for failure in self.failures) else 1
