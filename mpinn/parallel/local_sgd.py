"""Local SGD: every rank trains its own replica and the replicas are averaged every k steps.

Each rank takes its contiguous part of every global batch (as in data parallelism), but
steps its own replica with its own optimizer on the mean gradient of its rows alone, with no
communication (clipping, if asked, clips that local gradient: there is no reduced one). Every
``sync_every`` steps one Allreduce averages the parameters, weighted by
the samples each replica saw since the last average; optimizer state stays local. With
``sync_every=1`` and plain SGD this is exactly synchronous data parallelism; larger k
trades staleness between replicas for k times fewer exchanges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.data.samplers import shard_ranges
from mpinn.parallel.comm import Communicator
from mpinn.parallel.partitions import Replicated
from mpinn.parallel.strategy import Strategy
from mpinn.parallel.updaters import ReplicatedUpdate
from mpinn.registry.local_sgd import LocalSGDOptions
from mpinn.nn.step import accumulate_gradients, evaluate_rows


class LocalSGD(Strategy):
    """Periodic model averaging over ``comm`` every ``sync_every`` steps."""

    def __init__(self, comm: Communicator, sync_every: int = 8) -> None:
        LocalSGDOptions(sync_every=sync_every)
        self.comm = comm
        self.sync_every = sync_every
        self.partition, self.updater = Replicated(comm), ReplicatedUpdate(comm)

    def setup(self, model) -> None:
        """Every replica starts from rank 0's parameters."""
        self.partition.setup(model.net)
        self.updater.setup(model.net, model.optimizer)
        self.steps_since_sync = 0
        self.samples_since_sync = 0

    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        lo, hi = self.partition.rows(len(batch))
        rows = batch[lo:hi]
        model.net.zero_grad()
        tally = accumulate_gradients(model.net, model.head, x[rows], y[rows], max(len(rows), 1),
                                     shard_ranges(len(rows), accumulation_steps))
        if len(rows):
            self.updater.step(model.grads)
        self.samples_since_sync += len(rows)
        self.steps_since_sync += 1
        if self.steps_since_sync == self.sync_every:
            self.synchronize(model)
        return tally

    def synchronize(self, model) -> None:
        """Replace every replica by the sample-weighted average of all of them."""
        model.params[...] = self.averaged_params(model)
        self.steps_since_sync = self.samples_since_sync = 0

    def averaged_params(self, model) -> np.ndarray:
        """The replicas' average weighted by samples seen since the last average (equal weights
        right after one, when every replica is the same)."""
        weight = self.samples_since_sync
        total = self.comm.allreduce_obj(weight)
        if total == 0:
            weight, total = 1, self.comm.size
        summed = self.comm.Allreduce(model.params * model.params.dtype.type(weight))
        summed /= total
        return summed

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        """Evaluate the averaged model; each replica goes on training from its own parameters."""
        own = model.params.copy()
        model.params[...] = self.averaged_params(model)
        try:
            return evaluate_rows(model.net, model.head, x, y, *self.partition.rows(len(x)), batch_size)
        finally:
            model.params[...] = own

    def full_state(self, model) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The averaged parameters and rank 0's optimizer state (its replica's)."""
        params = self.averaged_params(model)
        return (params, model.optimizer.state_dict()) if self.comm.is_root else None

    def load_full_state(self, model, params: np.ndarray, optimizer_state: dict[str, Any]) -> None:
        model.params[...] = params
        model.optimizer.load_state_dict(optimizer_state)

    def finish(self, model) -> None:
        """A last average, so every rank ends with the same trained model."""
        self.synchronize(model)
