"""Data parallelism: every rank holds the whole model and a contiguous part of each global batch.

Each rank scales its loss gradient by (local samples / global samples), so a SUM over ranks
is the global mean gradient whatever the split. The sum runs on the flat gradient buffer in
buckets (slices in reverse layer order) whose non-blocking Iallreduce starts as soon as
backward has produced them, overlapping communication with the rest of backward.
"""

from __future__ import annotations

import numpy as np

from mpinn.data.samplers import shard_range, shard_ranges
from mpinn.parallel.comm import Communicator, Request
from mpinn.parallel.exact import ExactGradients
from mpinn.parallel.strategy import Strategy
from mpinn.registry.data import DataOptions
from mpinn.nn.step import accumulate_gradients, evaluate_rows
from mpinn.optim.update import GradientClip, update, whole_model_runs


def plan_buckets(layer_offsets: list[int], param_layers: list[int], total: int,
                 bucket_elems: int) -> list[tuple[int, int]]:
    """Slices [lo, hi) of the flat buffer, from its end to its start, cut at layer boundaries,
    each holding at least ``bucket_elems`` elements (except possibly the first one)."""
    buckets, hi = [], total
    for index in reversed(param_layers):
        lo = layer_offsets[index]
        if hi - lo >= bucket_elems or index == param_layers[0]:
            buckets.append((lo, hi))
            hi = lo
    return buckets


class DataParallel(Strategy):
    """The synchronous data-parallel strategy over ``comm``.

    ``deterministic=True`` sums gradients exactly over fixed groups of ``group_size``
    samples (:mod:`mpinn.parallel.exact`): bitwise the same parameters at any rank count.
    """

    def __init__(self, comm: Communicator, bucket_mb: float = 4.0, overlap: bool = True,
                 deterministic: bool = False, group_size: int = 128) -> None:
        DataOptions(bucket_mb=bucket_mb, deterministic=deterministic, group_size=group_size)
        self.comm = comm
        self.bucket_mb = bucket_mb
        self.overlap = overlap
        self.exact = ExactGradients(comm, group_size) if deterministic else None

    def setup(self, model) -> None:
        """Give every rank rank 0's parameters and check that they now agree bitwise."""
        self.comm.Bcast(model.params)
        self.comm.check_identical(model.params, "initial parameters")
        self._grads = model.grads
        bucket_elems = max(1, int(self.bucket_mb * 2**20) // model.grads.itemsize)
        self.buckets = plan_buckets(model.layer_offsets, model.param_layers, model.grads.size,
                                    bucket_elems) if self.overlap else [(0, model.grads.size)]
        if self.exact:
            self.exact.setup(model)
        self.clip = GradientClip(whole_model_runs(model))

    def local_range(self, n_global: int) -> tuple[int, int]:
        """This rank's contiguous part of a global batch of ``n_global`` samples."""
        return shard_range(n_global, self.comm.rank, self.comm.size)

    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        """In deterministic mode every group is its own micro-batch, so ``accumulation_steps``
        changes nothing there."""
        if self.exact:
            self.begin_step()
            tally = self.exact.accumulate(model, x, y, batch, self.exact_reducer())
            self.reduce_exact(model)
            self.apply_update(model)
            return tally
        lo, hi = self.local_range(len(batch))
        rows = batch[lo:hi]
        model.zero_grad()
        self.begin_step()
        tally = accumulate_gradients(model, model.head, x[rows], y[rows], len(batch),
                                     shard_ranges(len(rows), accumulation_steps), self.on_grads_ready)
        self.finish_gradients()
        self.apply_update(model)
        return tally

    def exact_reducer(self):
        """Deterministic mode: who reduces each layer's grid sums as soon as they are final
        (self, overlapping backward), or None to reduce them all in ``reduce_exact``."""
        return self if self.overlap and self.comm.size > 1 else None

    def start_reduction(self, lo: int, hi: int) -> None:
        """Start the Allreduce of the final grid sums ``exact.sums[lo:hi]`` (exact: integers)."""
        self._requests.append(self.comm.Iallreduce(self.exact.sums[lo:hi]))
        self.comm.Testall(self._requests)

    def wait_reductions(self) -> None:
        """Complete every reduction started since ``begin_step``."""
        self.comm.Waitall(self._requests)
        self._requests = []

    def reduce_exact(self, model) -> None:
        """Deterministic mode: the exact sum of every rank's grid sums, as the global-mean
        gradient in ``model.grads`` (a sharded optimizer overrides it to reduce-scatter)."""
        if self.exact_reducer() is not None:
            self.wait_reductions()
        else:
            self.comm.Allreduce(self.exact.sums)
        self.exact.to_gradients(self.exact.sums, model.grads)

    def apply_update(self, model) -> None:
        """The shared update once gradients are reduced: every rank holds the whole reduced
        gradient, so it clips alone (a sharded optimizer overrides it)."""
        update(model.optimizer, model.params, model.grads, self.clip)

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        if self.exact:
            return self.exact.evaluate_tally(model, x, y, batch_size)
        return evaluate_rows(model, model.head, x, y, *self.local_range(len(x)), batch_size)

    def full_state(self, model):
        """Every rank holds the whole model: rank 0 hands out its own."""
        if not self.comm.is_root:
            return None
        return model.params.copy(), self.with_grid(model.optimizer.state_dict())

    def load_full_state(self, model, params, optimizer_state) -> None:
        model.params[...] = params
        model.optimizer.load_state_dict(self.take_grid(optimizer_state))

    def with_grid(self, optimizer_state: dict) -> dict:
        """The state plus deterministic mode's grid exponent: a resumed run must sum on the
        same grid, or its truncations (hence its bits) differ from an uninterrupted run's."""
        if self.exact is not None and self.exact.exponent is not None:
            return {**optimizer_state, "grid_exponent": self.exact.exponent}
        return optimizer_state

    def take_grid(self, optimizer_state: dict) -> dict:
        """The state without the grid exponent, which goes back to the exact sums."""
        state = dict(optimizer_state)
        exponent = state.pop("grid_exponent", None)
        if self.exact is not None and exponent is not None:
            self.exact.exponent = int(exponent)
        return state

    def begin_step(self) -> None:
        self._requests: list[Request] = []

    def on_grads_ready(self, offset: int) -> None:
        """Backward hook: grads[offset:] is final; start every bucket it completes."""
        if self.comm.size == 1 or not self.overlap:
            return
        self._start_buckets(offset)
        self.comm.Testall(self._requests)  # lets MPI progress while backward goes on

    def _start_buckets(self, offset: int) -> None:
        while len(self._requests) < len(self.buckets) and self.buckets[len(self._requests)][0] >= offset:
            lo, hi = self.buckets[len(self._requests)]
            self._requests.append(self.comm.Iallreduce(self._grads[lo:hi]))

    def finish_gradients(self) -> None:
        """Complete the reduction of every bucket: grads now hold the global mean gradient."""
        if self.comm.size == 1:
            return
        if self.overlap:
            self._start_buckets(0)
            self.comm.Waitall(self._requests)
        else:
            self.comm.Allreduce(self._grads)
