"""ZeRO that survives a rank's death (``on_failure="shrink"``): every rank also keeps a buddy
copy of its right neighbour's optimizer-state shard, so one death loses no state.

The copy is not sent: rank r steps it itself, beside its own shard, from the same reduced
gradient and the same parameters, so it stays equal to the neighbour's (bitwise in
deterministic mode, where the clipping norms are exact sums). Stage 1 already holds the
whole reduced gradient; stage 2 receives the neighbour's reduced slice (P/N elements a step,
sent while its own shard steps). Cost per rank: one more shard of optimizer state (1/N of the
whole; Adam: 2 x 4 bytes x P/N), at stage 2 a received gradient slice (P/N), and one more
shard update a step.

After a shrink (:mod:`mpinn.train.recovery` rolls both copies back to the step in flight),
the survivors re-partition the whole state over themselves at their next step or save: each
old shard comes from its owner, or from the owner's left neighbour if the owner died. Two
neighbouring ranks dead before that (the buddy died with the shard) lose a shard: the run
stops with :class:`~mpinn.errors.RankLost` marked final, exit 75, from the last checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.errors import RankLost
from mpinn.optim.update import GradientClip, slice_runs, update
from mpinn.parallel.sharding import slice_twin, state_slice
from mpinn.parallel.updaters import ShardedUpdate

TAG_BUDDY = 7011


class BuddiedShardedUpdate(ShardedUpdate):
    """ZeRO's sharded update that, where a rank may die (``comm.shared.tolerant``: fit's
    ``on_failure="shrink"``), also steps a :class:`Buddy` copy of the right neighbour's shard
    and, once the communicator shrank, lays the shards out again over the survivors."""

    def setup(self, net, optimizer, clip: GradientClip | None = None,
              whole: dict[str, Any] | None = None) -> None:
        """ShardedUpdate's, with the buddy; ``whole``: a whole-model optimizer state to take
        this rank's slices of (after a shrink)."""
        super().setup(net, optimizer, clip)
        self.net, self.model_optimizer = net, optimizer
        self.buddy = Buddy(self, net, optimizer) if self.comm.shared.tolerant and self.comm.size > 1 else None
        if whole is not None:
            self.optimizer.load_state_dict(state_slice(whole, self.lo, self.hi))
            if self.buddy is not None:
                self.buddy.optimizer.load_state_dict(state_slice(whole, self.buddy.lo, self.buddy.hi))

    def step(self, gradient: np.ndarray) -> None:
        whole = gradient.size == self.params.size
        grads = gradient[self.lo:self.hi] if whole else gradient
        if self.buddy is not None:
            self.buddy.start(None if whole else grads)
        update(self.optimizer, self.params[self.lo:self.hi], grads, self.clip)
        if self.buddy is not None:
            self.buddy.step(self.params, gradient if whole else None)
        self.comm.Allgatherv(self.params, self.counts)

    def settle(self) -> bool:
        """After the communicator shrank (a rank died): the whole optimizer state, from the
        survivors' shards and buddy copies, laid out again over the survivors; whether it was."""
        if self.buddy is None or len(self.counts) == self.comm.size:
            return False
        self.setup(self.net, self.model_optimizer, whole=self.buddy.whole_state(self.optimizer))
        return True


class Buddy:
    """This rank's copy of its right neighbour's shard, in the layout of ``owner`` (a
    ShardedUpdate over its communicator)."""

    def __init__(self, owner: ShardedUpdate, net, optimizer) -> None:
        comm = self.comm = owner.comm
        self.right, self.left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
        self.lo = sum(owner.counts[:self.right])
        self.hi = self.lo + owner.counts[self.right]
        self.optimizer = slice_twin(optimizer, self.lo, self.hi)
        largest = (lambda value: comm.allreduce_obj(value, "max")) if owner.exact_norms else None
        self.clip = GradientClip(slice_runs(net, self.lo, self.hi), comm.Allreduce, largest)
        self.me, self.world = comm.rank, comm.world_ranks()  # who held each shard (COMM_WORLD ranks)
        self.received: np.ndarray | None = None
        self.sent: np.ndarray | None = None
        self._requests: list = []

    def start(self, shard: np.ndarray | None) -> None:
        """With a scattered gradient (stage 2), before this rank's shard steps (its clipping
        scales ``shard`` in place): send the reduced slice to the left neighbour, receive the
        right one's."""
        if shard is None:
            return
        if self.sent is None:
            self.sent, self.received = np.empty_like(shard), np.empty(self.hi - self.lo, shard.dtype)
        self.sent[...] = shard
        self._requests = [self.comm.Irecv(self.received, self.right, TAG_BUDDY),
                          self.comm.Isend(self.sent, self.left, TAG_BUDDY)]

    def step(self, params: np.ndarray, whole_gradient: np.ndarray | None) -> None:
        """Step the neighbour's slice of ``params`` as it does (the Allgatherv that follows
        puts its own bits there)."""
        if self._requests:
            self.comm.Waitall(self._requests)
            self._requests = []
        grads = whole_gradient[self.lo:self.hi] if whole_gradient is not None else self.received
        update(self.optimizer, params[self.lo:self.hi], grads, self.clip)

    def saved(self) -> dict[str, Any]:
        """The copy as it is now (for a redo after a death)."""
        return self.optimizer.state_dict()

    def restore(self, saved: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(saved)

    def whole_state(self, own) -> dict[str, Any]:
        """After the communicator shrank: the whole optimizer state, each old shard from its
        owner or from the owner's buddy (collective over the survivors). RankLost, final, if
        a shard and its buddy both died."""
        comm, old = self.comm, len(self.world)
        alive = set(comm.world_ranks())
        lost = [shard for shard in range(old) if self.world[shard] not in alive
                and self.world[(shard - 1) % old] not in alive]
        if lost:
            dead = sorted(rank for rank in self.world if rank not in alive)
            holders = ", ".join(f"rank {self.world[s]} (copy on rank {self.world[(s - 1) % old]})"
                                for s in lost)
            raise RankLost(dead, why="ZeRO lost the optimizer-state shard of " + holders +
                           ": neighbouring ranks died before the copies were rebuilt")
        provided = {self.me: own.state_dict()["state"]}
        if self.world[self.right] not in alive:
            provided[self.right] = self.optimizer.state_dict()["state"]
        shards: dict[int, dict[str, np.ndarray]] = {}
        for part in comm.allgather_obj(provided):
            shards.update(part)
        whole = {name: np.concatenate([shards[shard][name] for shard in range(old)])
                 for name in shards[self.me]}
        return {**own.state_dict(), "state": whole}
