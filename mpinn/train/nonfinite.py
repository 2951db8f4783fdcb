"""What happens when a step's loss or gradient is NaN or infinite: stop, or skip the step.

A diverged run must not go on writing NaN parameters into checkpoints and models. After each
step every rank checks its loss and the parameters it updates (a float64 sum: one pass, and a
NaN or an infinity anywhere makes it non-finite), and the ranks agree in one small reduction,
so all of them act alike. ``"stop"`` (the default) raises :class:`~mpinn.errors.Diverged`
naming the step, before anything of that step is written. ``"skip"`` restores what the step
changed, as a mixed-precision loss scaler skips an overflowing step, counts it, and still
stops after ``limit`` skipped steps in a row. With Keras' ``TerminateOnNaN`` among the
callbacks, ``"stop"`` follows Keras instead: ``model.stop_training`` is set and ``fit``
returns, still writing nothing from the bad step on (``diverged`` tells the loop).
"""

from __future__ import annotations

import math

import numpy as np

from mpinn.errors import ConfigError, Diverged

NONFINITE_MODES = ("stop", "skip")
SKIP_LIMIT = 10


class NonFiniteGuard:
    """Checks every step of one ``fit``; ``skipped`` counts the steps skipped so far."""

    def __init__(self, mode: str, strategy, limit: int = SKIP_LIMIT, keras_stop: bool = False) -> None:
        if mode not in NONFINITE_MODES:
            raise ConfigError(f"unknown on_nonfinite {mode!r}; choose one of: {', '.join(NONFINITE_MODES)}")
        if mode == "skip" and not strategy.lockstep:
            raise ConfigError("on_nonfinite skip needs every rank in step; asynchronous servers "
                              "apply steps on their own: use on_nonfinite stop with this strategy")
        self.mode, self.strategy, self.limit, self.keras_stop = mode, strategy, limit, keras_stop
        self.skipped = self.in_a_row = 0
        self.diverged = False
        self._pending = False  # a local verdict not yet shared (strategies that are not lockstep)
        self._saved = None

    def before_step(self, model) -> None:
        """In skip mode, keep what the step is about to change."""
        if self.mode == "skip":
            params, optimizer = self.strategy.local_state(model)
            self._saved = (params.copy(), optimizer.state_dict())

    def after_step(self, model, tally: np.ndarray, step: int, agree_now: bool = True) -> bool:
        """True when the step is good; in skip mode False after undoing a bad step. Raises
        Diverged (on every rank alike) when the run must stop. ``agree_now`` False keeps the
        local verdict for the next step that agrees (for ranks that do not run in lockstep)."""
        params, _ = self.strategy.local_state(model)
        self._pending |= not (math.isfinite(float(tally[0]))
                              and math.isfinite(float(np.sum(params, dtype=np.float64))))
        if not agree_now:
            return True
        bad = self.strategy.reduce_sum([float(self._pending)])[0] > 0
        self._pending = False
        if not bad:
            self.in_a_row = 0
            return True
        if self.mode == "stop" and self.keras_stop:
            self.diverged = model.stop_training = True
            return True
        if self.mode == "stop":
            raise Diverged(f"training diverged at step {step}: the loss or a gradient is NaN or "
                           f"infinite; nothing from this step was saved (lower the learning "
                           f"rate, or skip such steps with option on_nonfinite skip)")
        self._restore(model)
        self.skipped += 1
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            raise Diverged(f"training diverged: {self.in_a_row} steps in a row up to step {step} "
                           f"had a NaN or infinite loss or gradient and were skipped; stopping")
        return False

    def settle(self, model, step: int) -> None:
        """Share a local verdict not agreed yet (ranks not in lockstep), before an epoch ends
        and saves; ranks in lockstep agreed after every step already."""
        if not self.strategy.lockstep:
            self.after_step(model, np.zeros(3), step)

    def _restore(self, model) -> None:
        params, optimizer = self.strategy.local_state(model)
        saved_params, saved_state = self._saved
        params[...] = saved_params
        optimizer.load_state_dict(saved_state)

    def metrics(self) -> dict[str, int]:
        """What the metrics records add: the count of skipped steps in skip mode."""
        return {"skipped_steps": self.skipped} if self.mode == "skip" else {}
