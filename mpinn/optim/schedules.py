"""Learning-rate schedules: set ``optimizer.lr`` from the number of ``step()`` calls so far.

Call ``step()`` once per epoch (or per optimizer step, if the schedule is counted in steps),
as with torch.optim.lr_scheduler. Each schedule is a closed form of the count, so a resumed
run restores it from the count alone.
"""

from __future__ import annotations

import math

from mpinn.errors import ConfigError, require_positive
from mpinn.optim.base import Optimizer


class Schedule:
    """Base class: ``lr_at(count)`` gives the factor times the optimizer's initial lr."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.count = 0
        self.optimizer.lr = self.lr_at(0)

    def lr_at(self, count: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance by one and set the optimizer's lr; returns the new lr."""
        self.count += 1
        self.optimizer.lr = self.lr_at(self.count)
        return self.optimizer.lr

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.base_lr = int(state["count"]), float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.count)


class StepLR(Schedule):
    """Multiply the lr by ``gamma`` every ``step_size`` counts."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        require_positive("step_size", step_size)
        require_positive("gamma", gamma)
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, count: int) -> float:
        return self.base_lr * self.gamma ** (count // self.step_size)


class CosineAnnealingLR(Schedule):
    """Half a cosine from the initial lr down to ``eta_min`` over ``t_max`` counts, then flat."""

    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0) -> None:
        require_positive("t_max", t_max)
        if eta_min < 0:
            raise ConfigError(f"eta_min must be >= 0, got {eta_min!r}")
        self.t_max, self.eta_min = int(t_max), float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, count: int) -> float:
        progress = min(count, self.t_max) / self.t_max
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * progress)) / 2


class LinearWarmup(Schedule):
    """Rise linearly from ``start_factor`` x lr to lr over ``warmup`` counts, then hold
    (torch's LinearLR with end_factor 1; the large-batch warm-up of Goyal et al.)."""

    def __init__(self, optimizer: Optimizer, warmup: int, start_factor: float = 0.1) -> None:
        require_positive("warmup", warmup)
        if not 0 < start_factor <= 1:
            raise ConfigError(f"start_factor must lie in (0, 1], got {start_factor!r}")
        self.warmup, self.start_factor = int(warmup), float(start_factor)
        super().__init__(optimizer)

    def lr_at(self, count: int) -> float:
        progress = min(count, self.warmup) / self.warmup
        return self.base_lr * (self.start_factor + (1 - self.start_factor) * progress)
