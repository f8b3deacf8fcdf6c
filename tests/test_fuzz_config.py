"""Fuzzing the config-value gate: every key of the demo recipe set to values of every wrong kind.

Each ``key=value`` either composes and builds (check_config, then every builder a run calls before its first
step) or is refused with one UserInputError line; Hydra's own refusals at compose time are reported by
``check_command_line`` (tested in test_bad_inputs_training.py). Any other exception fails. The fast suite draws
a seeded sample; ``-m fuzz`` runs the whole grid.
"""
from __future__ import annotations

import numpy as np
import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tests.conftest import compose_config
from utils.data.compression import build_compressor
from utils.errors import UserInputError
from utils.model.builder import build_model
from utils.training.build import build_loss, build_optimizer, build_scheduler, build_train_transform, check_config

VALUES = ("-1", "0", "1e30", "abc", "null", "[1,2]", "{a:1}", "true", "nan", "inf", "2.5", "''")
SKIPPED = ("hydra", "logger.tags")  # Hydra's own node; free-form tags


def _keys() -> list[str]:
    keys = []

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            if OmegaConf.is_dict(value):
                walk(value, f"{prefix}{key}.")
            else:
                keys.append(f"{prefix}{key}")

    walk(compose_config("demo"), "")
    return [key for key in keys if not key.startswith(SKIPPED)]


def _build_everything(override: str) -> str:
    try:
        cfg = compose_config("demo", [override])
    except (HydraException, OmegaConfBaseException, ValueError):
        return "refused by Hydra"
    try:
        check_config(cfg)
        model = build_model(cfg.model)
        optimizer = build_optimizer(cfg.optimizer, model.parameters())
        build_scheduler(cfg.scheduler, optimizer, cfg.training.epochs, 3)
        build_loss(cfg.loss)
        build_train_transform(cfg.augment, cfg.training.epochs, build_compressor(cfg.get("compressor")))
    except UserInputError as err:
        assert "\n" not in str(err).strip(), f"{override}: {err}"
        return "refused"
    return "built"


def _grid() -> list[str]:
    return [f"{key}={value}" for key in _keys() for value in VALUES]


def test_a_sample_of_wrong_config_values_is_refused_in_one_line():
    grid = _grid()
    sample = np.random.default_rng(0).choice(len(grid), size=120, replace=False)
    outcomes = [_build_everything(grid[index]) for index in sorted(sample)]
    assert outcomes.count("refused") > 10


@pytest.mark.fuzz
def test_every_key_with_every_wrong_kind_of_value():
    outcomes = {override: _build_everything(override) for override in _grid()}
    assert sum(outcome == "refused" for outcome in outcomes.values()) > 100
