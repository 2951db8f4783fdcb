"""The local work of a step, shared by every strategy: forward, loss, backward on rows a rank
holds. No communication here: a strategy calls these and decides what to exchange around them.

A tally is [loss sum, correct count, sample count]; tallies add up across ranks and batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpinn.data.samplers import shard_range
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


def evaluate_rows(model, x: np.ndarray, y: np.ndarray, lo: int, hi: int,
                  batch_size: int) -> np.ndarray:
    """Tally of rows [lo, hi) in inference mode, ``batch_size`` rows at a time."""
    tally = np.zeros(3)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        out = model.forward(x[start:stop], training=False, stop=model.head.stop)
        tally += head_tally(model, out, y[start:stop])
    return tally
