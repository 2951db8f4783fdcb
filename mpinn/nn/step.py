"""The local work of a step, shared by every strategy: forward, loss and backward of a network
``net`` (an :class:`~mpinn.nn.Sequential` or a strategy's part of one) on the rows a rank holds,
read through the training ``head`` (see :class:`~mpinn.nn.sequential.Head`). No communication
and no optimizer here: a strategy calls these and decides what to exchange around them; the
update comes after, from :mod:`mpinn.optim.update`.

A tally is [loss sum, correct count, sample count]; tallies add up across ranks and batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpinn.nn.metrics import count_correct
from mpinn.nn.sequential import PieceTaker


def head_tally(head, out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Loss of ``head`` on ``out`` (leaves its gradient in the loss) as a tally."""
    n = len(out)
    return np.array([head.loss.forward(out, target) * n, count_correct(out, target, head.threshold), n],
                    dtype=np.float64)


def accumulate_gradients(net, head, xb: np.ndarray, yb: np.ndarray, n_global: int,
                         chunks: list[tuple[int, int]] | None = None,
                         on_grads_ready: Callable[[int], None] | None = None) -> np.ndarray:
    """Add this rank's share of the global-mean gradient to ``net.grads``.

    ``xb, yb`` are this rank's rows of a global batch of ``n_global`` samples; they run in
    ``chunks``, row ranges [lo, hi) covering them in order (micro-batches; one chunk of all
    rows by default), and each chunk's loss gradient is weighted by chunk / n_global, so
    summing over ranks gives the global mean whatever the split.
    ``on_grads_ready`` goes to the last chunk's backward (see ``Sequential.backward``).
    """
    tally = np.zeros(3)
    chunks = [(0, len(xb))] if chunks is None else chunks
    for k, (a, b) in enumerate(chunks):
        if b == a:
            continue
        out = net.forward(xb[a:b], training=True, stop=head.stop)
        tally += head_tally(head, out, yb[a:b])
        dout = head.loss.backward()
        dout *= (b - a) / n_global
        net.backward(dout, need_input_grad=False,
                     on_grads_ready=on_grads_ready if k == len(chunks) - 1 else None)
    return tally


def group_gradients(net, head, xb: np.ndarray, yb: np.ndarray, n_global: int,
                    groups: list[tuple[int, int]], taker: PieceTaker,
                    calls: list[slice] | None = None, scale: float = 1.0) -> list[np.ndarray]:
    """Deterministic mode's local work: forward and input gradients on all of ``xb`` (each
    product in one call per slice of ``calls``, one call for all rows by default), the loss
    and each parameter layer's gradient per group [lo, hi) of its rows (weighted group /
    n_global as above, times ``scale``), handed to ``taker`` piece by piece (see
    ``Sequential.backward_by_rows``). Returns the groups' tallies.

    ``scale``, a power of two, multiplies every gradient exactly (binary floating point rounds
    the same at any power-of-two scale, short of overflow and subnormals): a fixed-point grid
    gets its pieces on its own scale with no multiplication of its own."""
    out = net.forward(xb, training=True, stop=head.stop, calls=calls)
    dout = np.empty_like(out)
    tallies = []
    for lo, hi in groups:
        tallies.append(head_tally(head, out[lo:hi], yb[lo:hi]))
        np.multiply(head.loss.backward(), (hi - lo) / n_global * scale, out=dout[lo:hi])
    net.backward_by_rows(dout, [slice(lo, hi) for lo, hi in groups], taker, calls)
    return tallies


def rows_independent_of_call(net, groups: list[tuple[int, int]]) -> bool:
    """Whether every forward and input-gradient product of ``net`` gives each row the same
    bits in one call over all the groups' rows as in one call per group.

    The BLAS picks its kernel and blocking from a product's shape, so a row's bits can depend
    on how many rows share the call (OpenBLAS's Haswell kernel: 512 rows differ from 128;
    SkylakeX: fewer than 128 rows of a 10-wide product differ). Checked on random rows of
    the real shapes; where it fails, deterministic mode runs each product in one call per
    group (``calls`` of ``group_gradients``)."""
    rng = np.random.default_rng(0)
    n = groups[-1][1] if groups else 0
    for layer in (net.layers[i] for i in net.param_layers):
        fan_in, fan_out = layer.param_shapes()["W"]
        for product, width in ((layer.forward, fan_in), (layer.input_grad, fan_out)):
            rows = rng.standard_normal((n, width)).astype(net.dtype)
            whole = product(rows)
            if any(not np.array_equal(whole[lo:hi], product(rows[lo:hi])) for lo, hi in groups):
                return False
    return True


def evaluate_rows(net, head, x: np.ndarray, y: np.ndarray, lo: int, hi: int,
                  batch_size: int) -> np.ndarray:
    """Tally of rows [lo, hi) in inference mode, ``batch_size`` rows at a time."""
    tally = np.zeros(3)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        out = net.forward(x[start:stop], training=False, stop=head.stop)
        tally += head_tally(head, out, y[start:stop])
    return tally
