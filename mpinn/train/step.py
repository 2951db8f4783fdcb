"""The local work of a step, shared by every strategy: forward, loss, backward on rows a rank
holds, and the update once the gradient is reduced (clipping, then the optimizer copy's step).
No communication here: a strategy calls these and decides what to exchange around them (the
clipping's sums over ranks are callables the strategy hands in).

A tally is [loss sum, correct count, sample count]; tallies add up across ranks and batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpinn.data.samplers import shard_range
from mpinn.optim.clipping import TensorRuns, clip_factors, clip_values, clips_by_norm, exact_grid
from mpinn.train.metrics import count_correct


def head_tally(model, out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Loss on the model's training head (leaves its gradient in the loss) as a tally."""
    head, n = model.head, len(out)
    return np.array([head.loss.forward(out, target) * n, count_correct(out, target, head.threshold), n],
                    dtype=np.float64)


def accumulate_gradients(model, xb: np.ndarray, yb: np.ndarray, n_global: int,
                         micro_batches: int = 1,
                         on_grads_ready: Callable[[int], None] | None = None) -> np.ndarray:
    """Add this rank's share of the global-mean gradient to ``model.grads``.

    ``xb, yb`` are this rank's rows of a global batch of ``n_global`` samples; they run in
    ``micro_batches`` contiguous chunks and each chunk's loss gradient is weighted by
    chunk / n_global, so summing over ranks gives the global mean whatever the split.
    ``on_grads_ready`` goes to the last chunk's backward (see ``Sequential.backward``).
    """
    tally = np.zeros(3)
    chunks = [shard_range(len(xb), k, micro_batches) for k in range(micro_batches)]
    for k, (a, b) in enumerate(chunks):
        if b == a:
            continue
        out = model.forward(xb[a:b], training=True, stop=model.head.stop)
        tally += head_tally(model, out, yb[a:b])
        dout = model.head.loss.backward()
        dout *= (b - a) / n_global
        model.backward(dout, need_input_grad=False,
                       on_grads_ready=on_grads_ready if k == len(chunks) - 1 else None)
    return tally


def group_gradients(model, xb: np.ndarray, yb: np.ndarray, n_global: int,
                    groups: list[tuple[int, int]],
                    on_group_grads: Callable[[int, int], None]) -> list[np.ndarray]:
    """Deterministic mode's local work: forward and input gradients on all of ``xb`` at once,
    the loss and each parameter layer's gradient per group [lo, hi) of its rows (weighted
    group / n_global as above): ``on_group_grads(layer, k)`` takes group k's part of
    ``model.grads`` (see ``Sequential.backward_by_rows``). Returns the groups' tallies."""
    out = model.forward(xb, training=True, stop=model.head.stop)
    dout = np.empty_like(out)
    tallies = []
    for lo, hi in groups:
        tallies.append(head_tally(model, out[lo:hi], yb[lo:hi]))
        np.multiply(model.head.loss.backward(), (hi - lo) / n_global, out=dout[lo:hi])
    model.backward_by_rows(dout, [slice(lo, hi) for lo, hi in groups], on_group_grads)
    return tallies


def rows_independent_of_call(model, groups: list[tuple[int, int]]) -> bool:
    """Whether every forward and input-gradient product of ``model`` gives each row the same
    bits in one call over all the groups' rows as in one call per group.

    The BLAS picks its kernel and blocking from a product's shape, so a row's bits can depend
    on how many rows share the call (OpenBLAS's Haswell kernel: 512 rows differ from 128;
    SkylakeX: fewer than 128 rows of a 10-wide product differ). Checked on random rows of
    the real shapes; where it fails, deterministic mode runs each group on its own."""
    rng = np.random.default_rng(0)
    n = groups[-1][1] if groups else 0
    for layer in (model.layers[i] for i in model.param_layers):
        fan_in, fan_out = layer.param_shapes()["W"]
        for product, width in ((layer.forward, fan_in), (layer.input_grad, fan_out)):
            rows = rng.standard_normal((n, width)).astype(model.dtype)
            whole = product(rows)
            if any(not np.array_equal(whole[lo:hi], product(rows[lo:hi])) for lo, hi in groups):
                return False
    return True


def evaluate_rows(model, x: np.ndarray, y: np.ndarray, lo: int, hi: int,
                  batch_size: int) -> np.ndarray:
    """Tally of rows [lo, hi) in inference mode, ``batch_size`` rows at a time."""
    tally = np.zeros(3)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        out = model.forward(x[start:stop], training=False, stop=model.head.stop)
        tally += head_tally(model, out, y[start:stop])
    return tally


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


def whole_model_runs(model) -> TensorRuns:
    """The runs of a whole model's flat gradient: one per named parameter tensor."""
    return slice_runs(model, 0, model.grads.size)


def slice_runs(model, lo: int, hi: int) -> TensorRuns:
    """The runs of elements [lo, hi) of a model's flat gradient (a shard or a server's slice)."""
    return TensorRuns.of_slice([p.size for p in model.named_params().values()], lo, hi)
