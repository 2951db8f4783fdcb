"""The update every strategy makes once a gradient is reduced: the optimizer copy follows the
model optimizer's hyperparameters, the gradient is clipped by them, then the copy steps.
Pure numpy: the clipping's sums over ranks are callables the strategy hands in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpinn.optim.clipping import TensorRuns, clip_factors, clip_values, clips_by_norm, exact_grid


class GradientClip:
    """Clipping by the model optimizer's thresholds of the reduced gradient one optimizer copy
    steps (see :mod:`mpinn.optim.clipping`). ``runs`` maps that gradient to whole-model
    tensors; ``total`` sums a small float64 vector over every owner of a part of the model (None
    when this rank holds it whole); with ``largest`` (a max over the owners) the sums are exact,
    so the norm does not depend on how the model is split (deterministic mode)."""

    def __init__(self, runs: TensorRuns, total: Callable[[np.ndarray], np.ndarray] | None = None,
                 largest: Callable[[float], float] | None = None) -> None:
        self.runs, self.total, self.largest = runs, total, largest
        self.elements = 0

    def __call__(self, optimizer, grads: np.ndarray) -> None:
        clip_values(optimizer, grads)
        if not clips_by_norm(optimizer):
            return
        grid = None
        if self.largest is not None:
            local = float(np.max(np.abs(grads), initial=0.0)) ** 2
            grid = exact_grid(self.largest(local), self.total_elements(grads))
        squares = self.runs.squares(grads, grid)
        if self.total is not None:
            squares = self.total(squares)
        self.runs.scale(grads, clip_factors(optimizer, squares))

    def total_elements(self, grads: np.ndarray) -> int:
        """Elements of the whole gradient (summed over the owners once, then remembered)."""
        if not self.elements:
            self.elements = int(self.total(np.array([float(grads.size)]))[0]) if self.total else grads.size
        return self.elements


def update(optimizer, params: np.ndarray, grads: np.ndarray, clip: GradientClip) -> None:
    """The one update every strategy makes once a gradient is reduced: the optimizer copy takes
    the model optimizer's hyperparameters as they are now, the gradient is clipped by them
    (once, before any copy steps), then the copy steps its parameters."""
    optimizer.follow()
    clip(optimizer, grads)
    optimizer.step(params, grads)


def whole_model_runs(net) -> TensorRuns:
    """The runs of a whole network's flat gradient: one per named parameter tensor."""
    return slice_runs(net, 0, net.grads.size)


def slice_runs(net, lo: int, hi: int) -> TensorRuns:
    """The runs of elements [lo, hi) of a network's flat gradient (a shard or a server's slice)."""
    return TensorRuns.of_slice([p.size for p in net.named_params().values()], lo, hi)
