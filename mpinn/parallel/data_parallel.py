"""Data parallelism: every rank holds the whole model and a contiguous part of each global batch.

A strategy of three parts (see :mod:`mpinn.parallel.partitions`, :mod:`~mpinn.parallel.reducers`
and :mod:`~mpinn.parallel.updaters`): the replicated partition, a gradient reducer and an
updater. Plain data parallelism reduces with a bucketed allreduce overlapped with backward
(each rank weights its loss gradient by local / global samples, so the SUM over ranks is the
global mean whatever the split) and updates replicated: every rank steps the whole model.
ZeRO (:mod:`mpinn.parallel.zero`) changes the reducer and the updater; deterministic mode
(:mod:`mpinn.parallel.exact`) changes the reducer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.faults import inject
from mpinn.parallel.comm import Communicator
from mpinn.parallel.exact import exact_if
from mpinn.parallel.partitions import Replicated
from mpinn.parallel.reducers import BucketedAllreduce, Reducer
from mpinn.parallel.strategy import Strategy
from mpinn.parallel.updaters import ReplicatedUpdate
from mpinn.registry.data import DataOptions


class DataParallel(Strategy):
    """The synchronous data-parallel strategy over ``comm``: the replicated partition, the
    bucketed allreduce of ``bucket_mb`` buckets (``overlap=False``: one Allreduce after
    backward) and the replicated update.

    ``deterministic=True`` sums gradients exactly over fixed groups of ``group_size``
    samples (:mod:`mpinn.parallel.exact`): bitwise the same parameters at any rank count.
    Every rank's part of a batch follows ``comm``'s current size, so the strategy goes on
    over the survivors when ``comm`` shrinks (:mod:`mpinn.train.recovery`).
    """

    shrinkable = True

    def __init__(self, comm: Communicator, bucket_mb: float = 4.0, overlap: bool = True,
                 deterministic: bool = False, group_size: int = 128) -> None:
        DataOptions(bucket_mb=bucket_mb, deterministic=deterministic, group_size=group_size)
        self.compose(comm, exact_if(deterministic, group_size, BucketedAllreduce(comm, bucket_mb, overlap)),
                     ReplicatedUpdate(comm))

    def compose(self, comm: Communicator, reducer: Reducer, updater) -> None:
        """This strategy's parts: the replicated partition of ``comm``, ``reducer`` and ``updater``."""
        self.comm, self.partition, self.reducer, self.updater = comm, Replicated(comm), reducer, updater

    def setup(self, model) -> None:
        """Give every rank rank 0's parameters (checked bitwise), then set up the parts."""
        self.partition.setup(model.net)
        self.reducer.setup(model.net)
        self.updater.setup(model.net, model.optimizer)

    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        lo, hi = self.partition.rows(len(batch), self.reducer.unit)
        tally = self.reducer.accumulate(model.net, model.head, x, y, batch, lo, hi, accumulation_steps)
        inject("reduce", self.comm.step)  # test-only (mpinn.faults): reductions under way
        grads = self.reducer.finish()
        self.before_update()
        self.updater.step(grads)
        return tally

    def redo_state(self) -> Any:
        return self.reducer.redo_state()

    def load_redo_state(self, state: Any) -> None:
        self.reducer.load_redo_state(state)

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        lo, hi = self.partition.rows(len(x), self.reducer.evaluation_unit(batch_size))
        return self.reducer.evaluate(model.net, model.head, x, y, lo, hi, batch_size)

    def local_state(self, model) -> tuple[np.ndarray, Any]:
        """The whole parameters (every rank holds them) and the optimizer the updater steps."""
        return model.params, self.updater.optimizer

    def full_state(self, model):
        """The parameters every rank holds and the updater's optimizer state, on rank 0."""
        state = self.updater.gather_state()
        if not self.comm.is_root:
            return None
        return model.params.copy(), self.reducer.with_state(state)

    def load_full_state(self, model, params, optimizer_state) -> None:
        model.params[...] = params
        self.updater.load_state(self.reducer.take_state(optimizer_state))
