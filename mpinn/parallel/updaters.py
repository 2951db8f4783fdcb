"""Updaters: who steps which parameters, with which optimizer, once the gradient is reduced.

Every updater offers one interface:

- ``setup(net, optimizer, clip=None)``: the parameters it updates (``net.params``) and the
  model's optimizer (the one it steps, or the one its copies take hyperparameters from);
  ``clip`` replaces the default clipping (a norm summed over the ranks holding parts);
- ``step(gradient)``: one update from the reduced gradient (whole, or this rank's shard);
- ``optimizer``: the optimizer its steps use (a bad step is undone through it);
- ``gather_state() -> dict | None``: the optimizer state in the one-rank layout, on rank 0 of
  its communicator (None elsewhere; collective);
- ``load_state(optimizer_state)``: its part of such a state.

Two more update by messages of their own and are strategies whole: the parameter servers
(:mod:`mpinn.parallel.async_ps`) and local-SGD averaging (:mod:`mpinn.parallel.local_sgd`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.optim.update import GradientClip, slice_runs, update, whole_model_runs
from mpinn.parallel.comm import Communicator
from mpinn.parallel.sharding import shard_counts, slice_twin, state_bytes, state_slice


class ReplicatedUpdate:
    """The rank steps all its parameters with the optimizer it is given, on the whole reduced
    gradient (every rank of ``comm`` alike)."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm

    def setup(self, net, optimizer, clip: GradientClip | None = None) -> None:
        self.params, self.optimizer = net.params, optimizer
        self.clip = clip or GradientClip(whole_model_runs(net))

    def step(self, gradient: np.ndarray) -> None:
        update(self.optimizer, self.params, gradient, self.clip)

    def gather_state(self) -> dict[str, Any] | None:
        return self.optimizer.state_dict() if self.comm.is_root else None

    def load_state(self, optimizer_state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(optimizer_state)


class ShardedUpdate:
    """ZeRO's update: rank r of ``comm`` owns the slice [lo, hi) of the flat buffer
    (``shard_counts``), steps it with its own twin of the model's optimizer (state for that
    slice only), then an in-place Allgatherv gives every rank every updated slice. Clipping by
    a norm sums the shards' per-tensor squares over the ranks (exactly with ``exact_norms``,
    so the bits do not depend on the rank count)."""

    def __init__(self, comm: Communicator, exact_norms: bool = False) -> None:
        self.comm, self.exact_norms = comm, exact_norms

    def setup(self, net, optimizer, clip: GradientClip | None = None) -> None:
        self.params = net.params
        self.counts = shard_counts(net.params.size, self.comm.size)
        self.lo = sum(self.counts[:self.comm.rank])
        self.hi = self.lo + self.counts[self.comm.rank]
        self.optimizer = slice_twin(optimizer, self.lo, self.hi)
        largest = (lambda value: self.comm.allreduce_obj(value, "max")) if self.exact_norms else None
        self.clip = clip or GradientClip(slice_runs(net, self.lo, self.hi), self.comm.Allreduce, largest)

    def step(self, gradient: np.ndarray) -> None:
        """``gradient``: the whole reduced gradient, or this rank's slice of it (a reducer
        that scatters); a slice as long as the whole is the whole (this rank owns it all)."""
        grads = gradient[self.lo:self.hi] if gradient.size == self.params.size else gradient
        update(self.optimizer, self.params[self.lo:self.hi], grads, self.clip)
        self.comm.Allgatherv(self.params, self.counts)

    def gather_state(self) -> dict[str, Any] | None:
        """The optimizer-state slices gathered into the one-rank layout on rank 0."""
        local = self.optimizer.state_dict()
        whole = {name: self.comm.Gatherv(array, self.counts) for name, array in local["state"].items()}
        return {**local, "state": whole} if self.comm.is_root else None

    def load_state(self, optimizer_state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_slice(optimizer_state, self.lo, self.hi))

    def state_bytes(self) -> int:
        return state_bytes(self.optimizer)
