"""Learning-rate schedules: set ``optimizer.lr`` from the number of ``step()`` calls so far.

A schedule counts epochs (``per="epoch"``, the default) or optimizer steps (``per="step"``).
Given to ``fit(lr_schedule=...)`` it is stepped there and saved and restored with the
optimizer in checkpoints; it can also be stepped by hand, as with torch.optim.lr_scheduler.
Each schedule is a closed form of the count and of ``base_lr``, so a resumed run restores it
from the two alone, and giving a new lr on resume replaces ``base_lr``. It sets the model's
optimizer, the one source every optimizer copy of a strategy reads at each step.
"""

from __future__ import annotations

import math

from mpinn.errors import ConfigError, require_positive, require_positive_int
from mpinn.optim.base import Optimizer

UNITS = ("epoch", "step")


class Schedule:
    """Base class: ``lr_at(count)`` gives the lr after ``count`` epochs or steps."""

    def __init__(self, optimizer: Optimizer, per: str = "epoch") -> None:
        if per not in UNITS:
            raise ConfigError(f"a schedule counts per 'epoch' or per 'step', got per={per!r}")
        self.optimizer, self.per = optimizer, per
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

    def span(self, total: int) -> None:
        """Told by ``fit`` how many counts the whole run has (a schedule whose length is the
        run's takes it); sets the lr for the current count."""
        self.optimizer.lr = self.lr_at(self.count)

    def state_dict(self) -> dict[str, float | int | str]:
        return {"type": type(self).__name__, "count": self.count, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, float | int | str]) -> None:
        """Restore the count and base rate (a schedule of another kind is refused)."""
        if state.get("type", type(self).__name__) != type(self).__name__:
            raise ConfigError(f"the checkpoint's lr schedule is {state['type']}, this run's is "
                              f"{type(self).__name__}; resume with the same schedule")
        self.count, self.base_lr = int(state["count"]), float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.count)


class StepLR(Schedule):
    """Multiply the lr by ``gamma`` every ``step_size`` counts."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 per: str = "epoch") -> None:
        require_positive_int("step_size", step_size)
        require_positive("gamma", gamma)
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, per)

    def lr_at(self, count: int) -> float:
        return self.base_lr * self.gamma ** (count // self.step_size)


def cosine(base_lr: float, eta_min: float, progress: float) -> float:
    """Half a cosine from ``base_lr`` (progress 0) down to ``eta_min`` (progress 1)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * min(progress, 1.0))) / 2


class RunLength(Schedule):
    """A schedule over ``t_max`` counts; ``t_max=None`` is the whole run, as ``fit`` counts it."""

    t_max: int | None
    spans_run = False

    def _set_length(self, t_max: int | None) -> None:
        self.spans_run = t_max is None
        if t_max is not None:
            require_positive_int("t_max", t_max)
        self.t_max = None if t_max is None else int(t_max)

    def span(self, total: int) -> None:
        if self.spans_run:
            self._check_length(total)
            self.t_max = total
        super().span(total)

    def _check_length(self, total: int) -> None:
        require_positive_int("the run's length in counts", total)


class CosineAnnealingLR(RunLength):
    """Half a cosine from the initial lr down to ``eta_min`` over ``t_max`` counts, then flat."""

    def __init__(self, optimizer: Optimizer, t_max: int | None, eta_min: float = 0.0,
                 per: str = "epoch") -> None:
        self._set_length(t_max)
        if eta_min < 0:
            raise ConfigError(f"eta_min must be >= 0, got {eta_min!r}")
        self.eta_min = float(eta_min)
        super().__init__(optimizer, per)

    def lr_at(self, count: int) -> float:
        return cosine(self.base_lr, self.eta_min, count / self.t_max if self.t_max else 0.0)


class LinearWarmup(Schedule):
    """Rise linearly from ``start_factor`` x lr to lr over ``warmup`` counts, then hold
    (torch's LinearLR with end_factor 1; the large-batch warm-up of Goyal et al.)."""

    def __init__(self, optimizer: Optimizer, warmup: int, start_factor: float = 0.1,
                 per: str = "epoch") -> None:
        require_positive_int("warmup", warmup)
        _check_start_factor(start_factor)
        self.warmup, self.start_factor = int(warmup), float(start_factor)
        super().__init__(optimizer, per)

    def lr_at(self, count: int) -> float:
        progress = min(count, self.warmup) / self.warmup
        return self.base_lr * (self.start_factor + (1 - self.start_factor) * progress)


class WarmupCosine(RunLength):
    """Linear warm-up over ``warmup`` counts (as :class:`LinearWarmup`), then half a cosine
    down to ``eta_min`` by count ``t_max`` (warm-up included; None: the whole run), then flat."""

    def __init__(self, optimizer: Optimizer, warmup: int, t_max: int | None, eta_min: float = 0.0,
                 start_factor: float = 0.1, per: str = "epoch") -> None:
        require_positive_int("warmup", warmup)
        _check_start_factor(start_factor)
        self.warmup = int(warmup)
        self._set_length(t_max)
        if eta_min < 0:
            raise ConfigError(f"eta_min must be >= 0, got {eta_min!r}")
        self.eta_min, self.start_factor = float(eta_min), float(start_factor)
        super().__init__(optimizer, per)
        if t_max is not None:
            self._check_length(t_max)

    def _check_length(self, total: int) -> None:
        if not total > self.warmup:
            raise ConfigError(f"a warm-up of {self.warmup} {self.per}s leaves no room for the cosine "
                              f"in {total} {self.per}s; shorten the warm-up or lengthen the run")

    def lr_at(self, count: int) -> float:
        if count < self.warmup:
            return self.base_lr * (self.start_factor + (1 - self.start_factor) * count / self.warmup)
        if not self.t_max:
            return self.base_lr
        return cosine(self.base_lr, self.eta_min, (count - self.warmup) / (self.t_max - self.warmup))


def _check_start_factor(start_factor: float) -> None:
    if not 0 < start_factor <= 1:
        raise ConfigError(f"start_factor must lie in (0, 1], got {start_factor!r}")
