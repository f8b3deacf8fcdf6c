"""Averages of a network's weights: the exponential moving average kept while training (``training.ema_decay``)
and the uniform average of saved weights (``python -m utils.tools.average_checkpoints``).

Parameters are averaged; buffers (running statistics, counters; the networks of this repository have none) are
copied from the latest weights, since an average of statistics is not the statistic of the averaged network.
Both are deterministic functions of the weights they see, so an EMA restored from a checkpoint continues
bit-identically, and averaging the same files twice gives the same bits.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["WeightEMA", "uniform_average"]


class WeightEMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, kept on a copy of the network.

    ``module`` is that copy (eval mode, no gradients): validate it, save its state dict. It starts as a copy of
    the network it is given; :meth:`reset` starts it again from other weights (``training.init_from``). Under
    DDP every rank updates from its own copy of the synchronised weights, so every rank holds the same EMA.
    """

    def __init__(self, network: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0  # optimizer steps averaged in
        self.module = copy.deepcopy(network).eval().requires_grad_(False)
        for parameter in self.module.parameters():
            parameter.grad = None  # a copy made mid-training must not carry gradients along

    def _pairs(self, network: nn.Module, kind: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        averages, currents = list(getattr(self.module, kind)()), list(getattr(network, kind)())
        if len(averages) != len(currents):
            raise RuntimeError(f"the EMA copy has {len(averages)} {kind}, the network {len(currents)}")
        return list(zip(averages, currents))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Average ``network``'s parameters in (one optimizer step); copy its buffers."""
        for average, parameter in self._pairs(network, "parameters"):
            average.mul_(self.decay).add_(parameter.detach(), alpha=1.0 - self.decay)
        for average, buffer in self._pairs(network, "buffers"):
            average.copy_(buffer)
        self.updates += 1

    @torch.no_grad()
    def reset(self, network: nn.Module) -> None:
        """Start again from ``network``'s weights."""
        for kind in ("parameters", "buffers"):
            for average, current in self._pairs(network, kind):
                average.copy_(current)
        self.updates = 0

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores under ``ema``: the decay, the steps averaged in and the EMA weights."""
        return {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def uniform_average(state_dicts: Sequence[dict[str, torch.Tensor]], parameter_names: set[str]) -> dict[str, torch.Tensor]:
    """The mean of each floating-point parameter over ``state_dicts`` (summed in float64 in the given order,
    returned in its own dtype); every other entry (buffers, integer tensors) is the last state dict's."""
    if not state_dicts:
        raise ValueError("nothing to average")
    last = state_dicts[-1]
    averaged = {}
    for key, value in last.items():
        if key in parameter_names and value.is_floating_point():
            total = torch.zeros_like(value, dtype=torch.float64)
            for state in state_dicts:
                total += state[key].to(torch.float64)
            averaged[key] = (total / len(state_dicts)).to(value.dtype)
        else:
            averaged[key] = value.clone()
    return averaged
