"""Train a FeatureVarNet (SPEC §4-5) with Hydra configs.

    python3 final_main.py --config-name=train_vessl_final          # the entry's GPU recipe
    python3 final_main.py --config-name=demo                       # CPU demo on synthetic data
    python3 final_main.py --config-name=demo exp_name=try2 training.epochs=3 optimizer.lr=3e-4
    torchrun --nproc_per_node=2 final_main.py --config-name=train_vessl_final   # DDP on 2 GPUs
    python3 final_main.py -m --config-name=demo optimizer.lr=1e-3,3e-4   # a sweep: one run folder per job

Writes result/<exp_name>/checkpoints/{model,best_model}.pt and the (epoch, value) loss logs; see
utils/training/trainer.py for the folder layout, utils/training/sweep.py for sweeps (-m). A mistake (config,
override, data, checkpoint) ends in one line on stderr and exit status 2; ``MRI_DEBUG=1`` shows the traceback.
A sweep reports each failed job in one line, runs the others and exits non-zero if any failed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import os
import sys

import hydra
from omegaconf import DictConfig

from utils.errors import UserInputError, debug_requested, report_and_exit, run_cli
from utils.gates.torch_floor import require_safe_torch
from utils.training.build import check_command_line
from utils.training.sweep import SweepJobs, current_invocation, sweep_naming_overrides
from utils.training.trainer import train

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = "train"
# Under torchrun only rank 0 gets Hydra's run folder and log file; the other ranks log to the console only
# and create nothing (Hydra makes run.dir, and "." exists already).
OTHER_RANK_HYDRA_OVERRIDES = ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=stdout"]
JOBS = SweepJobs()


@hydra.main(version_base="1.3", config_path="configs", config_name=DEFAULT_CONFIG)
def hydra_main(cfg: DictConfig) -> None:
    try:
        JOBS.run(cfg, current_invocation(), train)  # a sweep job's errors stop here; a single run's come through
    except UserInputError as err:  # caught here: Hydra would print it over several lines with exit status 1
        if debug_requested():
            raise
        report_and_exit(err)


def main(argv: Sequence[str]) -> int:
    check_command_line(argv, CONFIG_DIR, DEFAULT_CONFIG)
    sys.argv += sweep_naming_overrides(argv)
    if os.environ.get("RANK", "0") != "0":
        sys.argv += OTHER_RANK_HYDRA_OVERRIDES
    hydra_main()  # Hydra reads sys.argv itself
    return JOBS.exit_status()


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
