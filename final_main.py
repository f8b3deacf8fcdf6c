"""Train a FeatureVarNet (SPEC §4-5) with Hydra configs.

    python3 final_main.py --config-name=train_vessl_final          # the entry's GPU recipe
    python3 final_main.py --config-name=demo                       # CPU demo on synthetic data
    python3 final_main.py --config-name=demo exp_name=try2 training.epochs=3 optimizer.lr=3e-4

Writes result/<exp_name>/checkpoints/{model,best_model}.pt and the (epoch, value) loss logs; see
utils/training/trainer.py for the folder layout.
"""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from utils.errors import EXIT_USER_ERROR, UserInputError
from utils.training.trainer import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except UserInputError as err:
        if os.environ.get("MRI_DEBUG", "") not in ("", "0"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
