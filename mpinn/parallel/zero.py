"""ZeRO: data parallelism with the optimizer state (stage 1) and the reduced gradients
(stage 2) sharded over the ranks.

The partition is data parallelism's (batch splitting, gradient weighting); the updater is
sharded (:class:`~mpinn.parallel.updaters.ShardedUpdate`): rank r owns the slice [lo, hi) of
the flat buffer (``shard_range``; sizes differ by one when N does not divide it), steps it
with its own twin of the model's optimizer (state for that slice only: ~1/N of the whole;
hyperparameters read from the model's optimizer at every step), then an in-place Allgatherv
gives every rank the whole updated parameter buffer. Clipping by a norm sums each shard's
per-tensor squares over the ranks (exactly in deterministic mode, so the bits do not depend
on N).

- Stage 1 reduces with data parallelism's bucketed allreduce; every rank then holds the
  whole global-mean gradient but only uses its slice of it.
- Stage 2 reduce-scatters instead (:class:`~mpinn.parallel.reducers.ReduceScatter`; it
  carries the exact sums in deterministic mode), in place: rank r gets only the reduced
  slice it owns, written at the start of the gradient buffer, and the rest of the buffer is
  left as scratch nothing reads. In this flat-buffer design the model's P-element gradient
  buffer cannot be freed (backward accumulates into it through the layers' views: it is the
  backward workspace), so stage 2 saves no resident memory over stage 1; what it saves is
  traffic (each rank sends ~P elements a step instead of ~2P) and the reduced gradient it
  keeps (~P/N elements), which is what frees memory where gradient buffers are allocated
  per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.parallel.comm import Communicator
from mpinn.parallel.data_parallel import DataParallel
from mpinn.parallel.exact import exact_if
from mpinn.parallel.reducers import BucketedAllreduce, ReduceScatter
from mpinn.parallel.zero_buddy import BuddiedShardedUpdate
from mpinn.registry.zero import ZeroOptions


class ZeroDataParallel(DataParallel):
    """Data parallelism whose optimizer state (and, at stage 2, reduced gradient) is sharded:
    the replicated partition, the bucketed allreduce (stage 1) or a reduce-scatter (stage 2),
    and the sharded update, which under ``on_failure="shrink"`` keeps a buddy copy of the
    neighbour's shard (:mod:`mpinn.parallel.zero_buddy`), so a rank's death loses no state."""

    def __init__(self, comm: Communicator, stage: int = 2, bucket_mb: float = 4.0,
                 overlap: bool = True, deterministic: bool = False, group_size: int = 128) -> None:
        ZeroOptions(zero_stage=stage, bucket_mb=bucket_mb, deterministic=deterministic,
                    group_size=group_size)
        carrier = BucketedAllreduce(comm, bucket_mb, overlap) if stage == 1 else ReduceScatter(comm)
        self.compose(comm, exact_if(deterministic, group_size, carrier),
                     BuddiedShardedUpdate(comm, deterministic))
        self.stage = stage

    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        self._settle(model)
        return super().train_step(model, x, y, batch, accumulation_steps)

    def full_state(self, model):
        self._settle(model)
        return super().full_state(model)

    def _settle(self, model) -> None:
        """If the communicator shrank (a rank died), lay the shards out again over the
        survivors, and the reduce-scatter's slices with them."""
        if self.updater.settle():
            self.reducer.setup(model.net)

    def redo_state(self) -> Any:
        """DataParallel's, and the buddy copy (what a step changes besides this rank's shard)."""
        buddy = self.updater.buddy
        return super().redo_state(), buddy.saved() if buddy is not None else None

    def load_redo_state(self, state: Any) -> None:
        super().load_redo_state(state[0])
        if state[1] is not None:
            self.updater.buddy.restore(state[1])

    def memory_bytes(self, model) -> dict[str, int]:
        """What this rank holds, in bytes: optimizer state, the reduced gradient it keeps, and
        the full parameter and local gradient buffers every rank keeps."""
        updater = self.updater
        reduced = model.grads[:updater.hi - updater.lo] if self.stage == 2 else model.grads
        return {"optimizer_state": updater.state_bytes(), "reduced_gradient": reduced.nbytes,
                "params": model.params.nbytes, "gradient_buffer": model.grads.nbytes}
