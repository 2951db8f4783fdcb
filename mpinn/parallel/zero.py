"""ZeRO: data parallelism with the optimizer state (stage 1) and the reduced gradients
(stage 2) sharded over the ranks.

Batch splitting, gradient weighting and the bucketed overlapped reduction are DataParallel's,
unchanged. What differs is the update: rank r owns the slice [lo, hi) of the flat buffer
(``shard_range``; sizes differ by one when N does not divide it), steps it with its own
twin of the model's optimizer (state for that slice only: ~1/N of the whole; hyperparameters
read from the model's optimizer at every step), then an in-place Allgatherv gives every rank
the whole updated parameter buffer. Clipping by a norm sums each shard's per-tensor squares
over the ranks (exactly in deterministic mode, so the bits do not depend on N).

- Stage 1 all-reduces the gradient buffer as DataParallel does; every rank then holds the
  whole global-mean gradient but only uses its slice of it.
- Stage 2 reduce-scatters instead (``reduce_scatter_gradients``, or ``reduce_exact`` in
  deterministic mode, which reduce-scatters DataParallel's exact sums), in place: rank r
  gets only the reduced slice it owns, written at the start of the gradient buffer, and
  the rest of the buffer is left as scratch nothing reads. In this flat-buffer design the
  model's P-element gradient buffer cannot be freed (backward accumulates into it through
  the layers' views: it is the backward workspace), so stage 2 saves no resident memory
  over stage 1; what it saves is traffic (each rank sends ~P elements a step instead of
  ~2P) and the reduced gradient it keeps (~P/N elements), which is what frees memory
  where gradient buffers are allocated per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.parallel.comm import Communicator
from mpinn.parallel.data_parallel import DataParallel
from mpinn.registry.zero import ZeroOptions
from mpinn.parallel.sharding import shard_counts, slice_twin, state_bytes, state_slice
from mpinn.optim.update import GradientClip, slice_runs, update


class ZeroDataParallel(DataParallel):
    """Data parallelism whose optimizer state (and, at stage 2, reduced gradient) is sharded."""

    def __init__(self, comm: Communicator, stage: int = 2, bucket_mb: float = 4.0,
                 overlap: bool = True, deterministic: bool = False, group_size: int = 128) -> None:
        ZeroOptions(zero_stage=stage)
        super().__init__(comm, bucket_mb=bucket_mb, overlap=overlap, deterministic=deterministic,
                         group_size=group_size)
        self.stage = stage

    def setup(self, model) -> None:
        """DataParallel's set-up, then this rank's slice and its optimizer."""
        super().setup(model)
        self.counts = shard_counts(model.params.size, self.comm.size)
        self.lo = sum(self.counts[:self.comm.rank])
        self.hi = self.lo + self.counts[self.comm.rank]
        self.optimizer = slice_twin(model.optimizer, self.lo, self.hi)
        largest = (lambda value: self.comm.allreduce_obj(value, "max")) if self.exact else None
        self.shard_clip = GradientClip(slice_runs(model, self.lo, self.hi), self.comm.Allreduce, largest)
        self.grad_shard = model.grads[:self.hi - self.lo] if self.stage == 2 else None

    def on_grads_ready(self, offset: int) -> None:
        """Stage 1 starts bucket reductions during backward; stage 2 reduces once, after it."""
        if self.stage == 1:
            super().on_grads_ready(offset)

    def finish_gradients(self) -> None:
        if self.stage == 1:
            super().finish_gradients()
        else:
            self.reduce_scatter_gradients()

    def reduce_scatter_gradients(self) -> np.ndarray:
        """Sum the ranks' gradient buffers in place; this rank's slice of the global mean lands
        at the start of the buffer (``grad_shard``). The one place stage 2 reduces: a mode
        that needs another reduction overrides this method (see ``reduce_exact``)."""
        self.comm.Reduce_scatter(None, self._grads, self.counts)
        return self.grad_shard

    def exact_reducer(self):
        """Stage 2 reduce-scatters the grid sums after backward; stage 1 is DataParallel's."""
        return super().exact_reducer() if self.stage == 1 else None

    def reduce_exact(self, model) -> None:
        """Deterministic mode: the exact grid sums (integers, so any order of
        addition gives the same bits), reduce-scattered at stage 2."""
        if self.stage == 1:
            super().reduce_exact(model)
            return
        sums = self.comm.Reduce_scatter(None, self.exact.sums, self.counts)
        self.exact.to_gradients(sums, self.grad_shard)

    def apply_update(self, model) -> None:
        """Step this rank's slice with its own optimizer, then share every slice with every rank."""
        grads = self.grad_shard if self.stage == 2 else model.grads[self.lo:self.hi]
        update(self.optimizer, model.params[self.lo:self.hi], grads, self.shard_clip)
        self.comm.Allgatherv(model.params, self.counts)

    def memory_bytes(self, model) -> dict[str, int]:
        """What this rank holds, in bytes: optimizer state, the reduced gradient it keeps, and
        the full parameter and local gradient buffers every rank keeps."""
        reduced = self.grad_shard.nbytes if self.stage == 2 else model.grads.nbytes
        return {"optimizer_state": state_bytes(self.optimizer), "reduced_gradient": reduced,
                "params": model.params.nbytes, "gradient_buffer": model.grads.nbytes}

    def local_state(self, model) -> tuple[np.ndarray, Any]:
        """The whole parameters (every rank gathers them) and this rank's slice optimizer."""
        return model.params, self.optimizer

    def full_state(self, model) -> tuple[np.ndarray, dict[str, Any]] | None:
        """Gather the optimizer-state slices into the one-rank layout on rank 0."""
        local = self.optimizer.state_dict()
        whole = {name: self.comm.Gatherv(array, self.counts) for name, array in local["state"].items()}
        if not self.comm.is_root:
            return None
        return model.params.copy(), self.with_grid({**local, "state": whole})

    def load_full_state(self, model, params: np.ndarray, optimizer_state: dict[str, Any]) -> None:
        """Every rank takes the whole parameters and its slice of the optimizer state."""
        model.params[...] = params
        self.optimizer.load_state_dict(state_slice(self.take_grid(optimizer_state), self.lo, self.hi))
