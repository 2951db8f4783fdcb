"""Gradient reducers: how the ranks' shares of a step's gradient become the global mean.

Each rank of a data-parallel group back-propagates its rows of the global batch, each loss
gradient weighted by rows / global rows, so the SUM over the group of the ranks' gradient
buffers is the global-mean gradient whatever the split. A reducer computes that sum. Every
reducer offers one interface:

- ``setup(net, buffer=None)``: plan on ``net``'s flat buffer layout; ``buffer`` is what is
  summed (``net.grads`` by default);
- ``accumulate(net, head, x, y, batch, lo, hi, micro_batches) -> tally``: the local work of a
  data-parallel step on positions [lo, hi) of ``batch`` (whole ``unit``s), in
  ``micro_batches`` contiguous chunks, its reductions started while backward goes on;
- ``chunks(n_rows, micro_batches)`` and ``accumulate_by(net, run, n_chunks, n_global, agree)
  -> tally``: the same for a strategy that runs backward itself (a pipeline stage): the
  micro-batches of its rows, and the local work ``run(on_grads_ready, after_backward)``;
- ``begin()`` and ``ready(offset)``: a step starts; the buffer from ``offset`` on is final;
- ``finish() -> gradient``: every reduction completed; the global-mean gradient, whole, or
  (a reducer that ``scatters``) this rank's ``shard_counts`` slice of it;
- ``evaluate(net, head, x, y, lo, hi, batch_size) -> tally`` of rows [lo, hi) in inference
  mode, ``batch_size`` rows at a time from ``lo`` (aligned to ``evaluation_unit``);
- ``unit`` (positions per indivisible piece of a batch) and ``evaluation_unit(batch_size)``;
- ``summable(tally)``: a micro-batch's tally as it is added up (exactly, in deterministic mode);
- ``with_state(optimizer_state)`` / ``take_state(optimizer_state)``: what the reducer keeps
  across a checkpoint, added to and taken from the optimizer state.

Here are the float reducers: a bucketed, overlapped allreduce, and a reduce-scatter. The
exact one (deterministic mode) is in :mod:`mpinn.parallel.exact`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.data.samplers import shard_ranges
from mpinn.layout.buckets import plan_buckets
from mpinn.nn.step import accumulate_gradients, evaluate_rows
from mpinn.parallel.comm import Communicator, Request
from mpinn.parallel.sharding import shard_counts


class Reducer:
    """The interface, with what the float reducers share: their local work and evaluation,
    no state of their own."""

    comm: Communicator
    unit = 1
    scatters = False

    def accumulate(self, net, head, x: np.ndarray, y: np.ndarray, batch: np.ndarray, lo: int,
                   hi: int, micro_batches: int = 1) -> np.ndarray:
        rows = batch[lo:hi]
        net.zero_grad()
        self.begin()
        return accumulate_gradients(net, head, x[rows], y[rows], len(batch),
                                    shard_ranges(len(rows), micro_batches), self.ready)

    def chunks(self, n_rows: int, micro_batches: int) -> list[tuple[int, int]]:
        """``micro_batches`` contiguous row ranges of ``n_rows`` rows (fewer if rows are fewer)."""
        return shard_ranges(n_rows, min(micro_batches, n_rows))

    def accumulate_by(self, net, run, n_chunks: int, n_global: int,
                      agree: Communicator) -> np.ndarray:
        """``run(on_grads_ready, after_backward)`` runs this rank's ``n_chunks`` micro-batches
        (of a batch of ``n_global`` samples) forward and backward, passing ``on_grads_ready`` to
        the last backward and calling ``after_backward()`` (if any) after each; returns the tally.
        ``agree`` spans every rank that runs the step (here unused)."""
        net.zero_grad()
        self.begin()
        return run(self.ready, None)

    def summable(self, tally: np.ndarray) -> np.ndarray:
        return tally

    def evaluate(self, net, head, x: np.ndarray, y: np.ndarray, lo: int, hi: int,
                 batch_size: int) -> np.ndarray:
        return evaluate_rows(net, head, x, y, lo, hi, batch_size)

    def evaluation_unit(self, batch_size: int) -> int:
        return 1

    def with_state(self, optimizer_state: dict) -> dict:
        return optimizer_state

    def take_state(self, optimizer_state: dict) -> dict:
        return optimizer_state

    def redo_state(self) -> Any:
        """What a redo of a step (after a rank died) must start from: nothing here."""
        return None

    def load_redo_state(self, state: Any) -> None:
        """Put back what ``redo_state`` returned."""

    def begin(self) -> None:
        """A step starts (nothing in flight)."""

    def ready(self, offset: int) -> None:
        """Backward hook: the buffer from ``offset`` on is final."""


class BucketedAllreduce(Reducer):
    """The sum over ``comm``, every rank getting all of it, in buckets (slices of the flat
    buffer cut at layer boundaries, from its end) whose non-blocking Iallreduce starts as soon
    as backward has finished them. ``overlap=False``: one Allreduce of the whole buffer after
    backward."""

    def __init__(self, comm: Communicator, bucket_mb: float = 4.0, overlap: bool = True) -> None:
        self.comm, self.bucket_mb, self.overlap = comm, bucket_mb, overlap
        self._requests: list[Request] = []

    @property
    def overlaps(self) -> bool:
        """Whether reductions start during backward (from ``ready``)."""
        return self.overlap and self.comm.size > 1

    def setup(self, net, buffer: np.ndarray | None = None) -> None:
        self.buffer = net.grads if buffer is None else buffer
        bucket_elems = max(1, int(self.bucket_mb * 2**20) // self.buffer.itemsize)
        self.buckets = plan_buckets(net.layer_offsets, net.param_layers, self.buffer.size,
                                    bucket_elems) if self.overlap else [(0, self.buffer.size)]

    def begin(self) -> None:
        self._requests = []

    def ready(self, offset: int) -> None:
        """Start every bucket the buffer from ``offset`` on completes; let MPI progress."""
        if self.overlaps:
            self._start_buckets(offset)
            self.comm.Testall(self._requests)

    def _start_buckets(self, offset: int) -> None:
        while len(self._requests) < len(self.buckets) and self.buckets[len(self._requests)][0] >= offset:
            lo, hi = self.buckets[len(self._requests)]
            self._requests.append(self.comm.Iallreduce(self.buffer[lo:hi]))

    def finish(self) -> np.ndarray:
        if self.overlaps:
            self._start_buckets(0)
            self.comm.Waitall(self._requests)
            self._requests = []
        elif self.comm.size > 1:
            self.comm.Allreduce(self.buffer)
        return self.buffer


class ReduceScatter(Reducer):
    """The sum over ``comm``, in place, after backward; rank r keeps only its slice r
    (``shard_counts``), written at the start of the buffer (the rest is left as scratch)."""

    scatters = True
    overlaps = False

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm

    def setup(self, net, buffer: np.ndarray | None = None) -> None:
        self.buffer = net.grads if buffer is None else buffer
        self.counts = shard_counts(self.buffer.size, self.comm.size)

    def finish(self) -> np.ndarray:
        return self.comm.Reduce_scatter(None, self.buffer, self.counts)
