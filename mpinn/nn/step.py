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
    and each parameter layer's gradient per group [lo, hi) of its rows (other rows are
    padding: they pass forward but take no part in the loss or the gradients; weighted group /
    n_global as above, times ``scale``), handed to ``taker`` piece by piece (see
    ``Sequential.backward_by_rows``). Returns the groups' tallies.

    ``scale``, a power of two, multiplies every gradient exactly (binary floating point rounds
    the same at any power-of-two scale, short of overflow and subnormals): a fixed-point grid
    gets its pieces on its own scale with no multiplication of its own."""
    out = net.forward(xb, training=True, stop=head.stop, calls=calls)
    dout = np.zeros_like(out)  # rows outside every group (padding) carry no gradient
    tallies = []
    for lo, hi in groups:
        tallies.append(head_tally(head, out[lo:hi], yb[lo:hi]))
        np.multiply(head.loss.backward(), (hi - lo) / n_global * scale, out=dout[lo:hi])
    net.backward_by_rows(dout, [slice(lo, hi) for lo, hi in groups], taker, calls)
    return tallies


def rows_independent_of_call(net, slots: list[tuple[int, int]]) -> bool:
    """Whether every forward and input-gradient product of ``net`` gives each row the same
    bits in one call over all the slots' rows as in one call per slot [lo, hi).

    The BLAS picks its kernel and blocking from a product's shape, so a row's bits can depend
    on the call (OpenBLAS's Haswell kernel: on a row's position modulo 6 in it, and the last
    rows of a call differ; SkylakeX: fewer than 128 rows of a 10-wide product differ).
    Checked on random rows of the real shapes (a row's bits depend on where it lies, not on
    the other rows' values); where it fails, deterministic mode runs each product in one call
    per slot (``calls`` of ``group_gradients``)."""
    rng = np.random.default_rng(0)
    n = slots[-1][1] if slots else 0
    for layer in (net.layers[i] for i in net.param_layers):
        fan_in, fan_out = layer.param_shapes()["W"]
        for product, width in ((layer.forward, fan_in), (layer.input_grad, fan_out)):
            rows = rng.standard_normal((n, width)).astype(net.dtype)
            whole = product(rows)
            if any(not np.array_equal(whole[lo:hi], product(rows[lo:hi])) for lo, hi in slots):
                return False
    return True


def call_pitch(net, group_size: int) -> int:
    """The rows of the slot in which a group's products are computed, its own rows first and
    zero rows after: the fewest, from ``group_size`` to 1/16 more (even counts), at which
    three slots in one call give each row the bits of a call per slot
    (``rows_independent_of_call``); ``group_size`` if none does. A function of the shapes and
    the BLAS alone, so the same at any rank count. OpenBLAS's Haswell kernel takes 132 for
    groups of 128 (a multiple of 6); a kernel whose rows do not depend on the call takes the
    group size."""
    extra = [p for p in range(group_size + 1, group_size + group_size // 16 + 1) if p % 2 == 0]
    for pitch in [group_size, *extra]:
        if rows_independent_of_call(net, [(k * pitch, (k + 1) * pitch) for k in range(3)]):
            return pitch
    return group_size


def evaluate_rows(net, head, x: np.ndarray, y: np.ndarray, lo: int, hi: int,
                  batch_size: int) -> np.ndarray:
    """Tally of rows [lo, hi) in inference mode, ``batch_size`` rows at a time."""
    tally = np.zeros(3)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        out = net.forward(x[start:stop], training=False, stop=head.stop)
        tally += head_tally(head, out, y[start:stop])
    return tally
