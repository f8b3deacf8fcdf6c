"""The augmentation probability as a function of the epoch (MRAugment's schedules).

``p(epoch)`` is 0 before ``delay_epochs`` for every kind except ``constant``, then:
- ``constant``: ``strength`` from the first epoch;
- ``delay``: ``strength`` from ``delay_epochs`` on;
- ``ramp``: linear from 0 at ``delay_epochs`` to ``strength`` at the last epoch (``total_epochs - 1``);
- ``exp``: ``strength * (1 - exp(-rate * t)) / (1 - exp(-rate))`` with ``t`` going 0 -> 1 over the same span,
  fast at first, then levelling off.
The schedule is a pure function of the epoch, so a resumed run continues it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SCHEDULE_KINDS", "AugmentSchedule"]

SCHEDULE_KINDS = ("constant", "delay", "ramp", "exp")


@dataclass(frozen=True)
class AugmentSchedule:
    kind: str = "ramp"
    strength: float = 0.7
    delay_epochs: int = 0
    total_epochs: int = 1
    exp_rate: float = 5.0

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule must be one of {list(SCHEDULE_KINDS)}, got {self.kind!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be a probability in [0, 1], got {self.strength!r}")
        if self.delay_epochs < 0 or self.total_epochs < 1 or self.exp_rate <= 0:
            raise ValueError("delay_epochs must be >= 0, total_epochs >= 1 and exp_rate > 0")

    def probability(self, epoch: int) -> float:
        """The probability of augmenting a slice in ``epoch`` (0-based)."""
        if self.kind == "constant":
            return self.strength
        if epoch < self.delay_epochs:
            return 0.0
        if self.kind == "delay":
            return self.strength
        span = self.total_epochs - 1 - self.delay_epochs
        progress = 1.0 if span <= 0 else min(1.0, (epoch - self.delay_epochs) / span)
        if self.kind == "ramp":
            return self.strength * progress
        return self.strength * (1.0 - math.exp(-self.exp_rate * progress)) / (1.0 - math.exp(-self.exp_rate))
