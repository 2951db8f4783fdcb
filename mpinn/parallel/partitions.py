"""Partitions: which samples, layers or columns of a step each rank computes.

- :class:`Replicated` (data parallelism): every rank holds the whole model and computes a
  contiguous part of each global batch;
- the grid (model parallelism, :mod:`mpinn.parallel.model_parallel`): a data replica's part of
  each batch, through a pipeline stage's layers (:mod:`mpinn.parallel.pipeline`) cut over a
  tensor group (:mod:`mpinn.parallel.tensor`); :mod:`mpinn.parallel.local_model` builds a
  rank's part.

Positions of a batch are dealt out in whole ``unit``s (a reducer's: one sample, or a
deterministic group), so the cut of the units never depends on the rank count.
"""

from __future__ import annotations

from mpinn.data.samplers import shard_range
from mpinn.parallel.comm import Communicator


def aligned_range(n: int, unit: int, rank: int, size: int) -> tuple[int, int]:
    """Positions [lo, hi) of 0..n that ``rank`` of ``size`` takes: whole units of ``unit``
    positions (the last one may be short), contiguous, in rank order."""
    first, last = shard_range(-(-n // unit), rank, size)
    return min(first * unit, n), min(last * unit, n)


class Replicated:
    """Every rank of ``comm`` holds the whole model (rank 0's parameters, checked bitwise at
    set-up) and takes its contiguous part of each batch."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm

    def setup(self, net) -> None:
        self.comm.Bcast(net.params)
        self.comm.check_identical(net.params, "initial parameters")

    def rows(self, n: int, unit: int = 1) -> tuple[int, int]:
        """This rank's positions [lo, hi) of a batch of ``n``, in whole ``unit``s."""
        return aligned_range(n, unit, self.comm.rank, self.comm.size)
