"""The interface every parallel strategy offers the training loop.

A strategy wraps the unchanged serial model and optimizer and decides what is exchanged and
when; the loop in :mod:`mpinn.train.loop` only asks it for steps, tallies and state. Every
method is called on every rank of ``comm`` (most are collective).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mpinn.parallel.comm import Communicator


class Strategy:
    """Base class; ``comm`` spans every rank taking part, and its rank 0 logs and writes."""

    comm: Communicator
    lockstep: bool = True  # every rank finishes step t before any starts t + 1
    shrinkable: bool = False  # goes on over fewer ranks after one dies (on_failure="shrink")
    update_hook: Callable[[], None] | None = None  # called before each update (recovery's)

    @property
    def comm_seconds(self) -> float:
        """Seconds this rank has spent in MPI calls (``comm`` and its splits), for the metrics log."""
        return self.comm.seconds

    def check_batch(self, batch_size: int) -> None:
        """Before any work: a ConfigError if this strategy cannot take global batches of
        ``batch_size`` samples as it was configured (by default it takes any)."""

    def setup(self, model) -> None:
        """Before the first step: distribute or check the initial parameters."""
        raise NotImplementedError

    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        """One optimizer step on the global batch ``x[batch], y[batch]``; returns this rank's
        [loss sum, correct, count] tally such that the sum over ranks counts each sample once."""
        raise NotImplementedError

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        """This rank's tally over (x, y) in inference mode; each sample counted once over ranks."""
        raise NotImplementedError

    def reduce_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum small float64 tallies over every rank of ``comm``."""
        return self.comm.Allreduce(np.array(values, dtype=np.float64))

    def full_state(self, model) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The whole model's flat parameters and optimizer ``state_dict`` (state arrays in the
        same flat layout), as one rank training alone would hold them: on rank 0 of ``comm``,
        None elsewhere. The checkpoint format, so it never depends on the strategy or N."""
        raise NotImplementedError

    def load_full_state(self, model, params: np.ndarray, optimizer_state: dict[str, Any]) -> None:
        """Every rank takes its part of what ``full_state`` returned (after ``setup``)."""
        raise NotImplementedError

    def local_state(self, model) -> tuple[np.ndarray, Any]:
        """The parameters and the optimizer this rank's steps update (to undo a bad step)."""
        return model.params, model.optimizer

    def before_update(self) -> None:
        """Call just before this rank's parameters and optimizer state change in a step."""
        if self.update_hook is not None:
            self.update_hook()

    def redo_state(self) -> Any:
        """What a step changes besides the parameters and the optimizer, that a redo of the
        step (after a rank died) must start from: nothing here."""
        return None

    def load_redo_state(self, state: Any) -> None:
        """Put back what ``redo_state`` returned."""

    def finish(self, model) -> None:
        """After the last step: ``model.params`` on every rank holds the full trained model."""
