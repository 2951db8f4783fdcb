"""Deterministic mode: gradients summed exactly, so results do not depend on the rank count.

Floating-point sums change with their order, and the order changes with how a batch and a
reduction are split over ranks. Here the global batch is cut into groups of ``group_size``
consecutive samples, fixed whatever the number of ranks; each rank takes whole groups, and
each group's gradient (computed alone, so with the same bits on any rank) is put on a
fixed-point grid: multiplied by 2**s and truncated to a whole number. Whole numbers below
2**53 add exactly in float64 in any order, so the local sums and the Allreduce are exact and
the result is a function of the groups alone. It is converted back to the model's dtype once.

The exponent s is agreed by every rank and independent of N: it follows from the largest
group-gradient magnitude of the previous step (an Allreduce MAX, exact), leaving ``headroom``
bits for growth; a step whose gradients outgrow it is recomputed with a larger grid. Losses
are put on a grid too, so logged metrics match across rank counts as well.
"""

from __future__ import annotations

import math

import numpy as np
from mpi4py import MPI

from mpinn.data.samplers import shard_range
from mpinn.errors import ConfigError
from mpinn.parallel.comm import Communicator
from mpinn.train.step import accumulate_gradients, evaluate_rows

EXACT_BITS = 53  # float64 holds every whole number below 2**53 exactly
LOSS_GRID = 2.0 ** -20  # per-group loss sums are rounded to this grid (exact sums in float64)


def on_loss_grid(tally: np.ndarray) -> np.ndarray:
    """The tally with its loss sum rounded to ``LOSS_GRID`` (counts are whole already)."""
    tally[0] = np.round(tally[0] / LOSS_GRID) * LOSS_GRID
    return tally


def group_bounds(n: int, group_size: int, rank: int, size: int) -> list[tuple[int, int]]:
    """The groups [lo, hi) of positions 0..n that ``rank`` of ``size`` takes: whole groups,
    contiguous, the same cut for any ``size``."""
    n_groups = -(-n // group_size)
    first, last = shard_range(n_groups, rank, size)
    return [(g * group_size, min((g + 1) * group_size, n)) for g in range(first, last)]


class ExactGradients:
    """Sums of group gradients that are exact, hence independent of the grouping over ranks."""

    def __init__(self, comm: Communicator, group_size: int = 128, headroom: int = 8) -> None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ConfigError(f"deterministic group size must be a positive integer, got {group_size!r}")
        self.comm, self.group_size, self.headroom = comm, group_size, headroom
        self.exponent: int | None = None  # of the grid in use, agreed on every rank

    def setup(self, model) -> None:
        self.sums = np.zeros(model.grads.size, np.float64)
        self._scaled = np.empty_like(model.grads)
        self._wide = np.empty(model.grads.size, np.float64)

    def accumulate(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """This rank's groups of the global batch summed on the grid into ``sums``; returns
        its tally. Recomputes the step on a larger grid if the gradients outgrew the grid."""
        n_groups = -(-len(batch) // self.group_size)
        while True:
            if self.exponent is None:
                self.exponent = self._exponent_for(1.0, n_groups)
            tally, local_max = self._grid_sums(model, x, y, batch)
            largest = self.comm.Allreduce(np.array([local_max]), op=MPI.MAX)[0]
            if not math.isfinite(largest):  # the step's gradients are NaN: the loop's guard acts
                self.used_exponent = self.exponent
                return tally
            fits = math.ldexp(largest, self.exponent) * n_groups < 2.0 ** EXACT_BITS
            used, self.exponent = self.exponent, self._exponent_for(largest, n_groups)
            if fits:
                self.used_exponent = used
                return tally

    def _exponent_for(self, largest: float, n_groups: int) -> int:
        """The grid exponent leaving ``headroom`` bits above ``largest`` for n_groups terms."""
        if largest == 0.0:
            return self.exponent if self.exponent is not None else 0
        top = math.frexp(largest)[1] + math.ceil(math.log2(n_groups))
        return max(-100, min(100, EXACT_BITS - self.headroom - top))

    def _grid_sums(self, model, x, y, batch) -> tuple[np.ndarray, float]:
        scale = model.grads.dtype.type(math.ldexp(1.0, self.exponent))
        tally, local_max = np.zeros(3), 0.0
        groups = group_bounds(len(batch), self.group_size, self.comm.rank, self.comm.size)
        if not groups:
            self.sums.fill(0.0)
        for index, (lo, hi) in enumerate(groups):
            rows = batch[lo:hi]
            model.zero_grad()
            tally += on_loss_grid(accumulate_gradients(model, x[rows], y[rows], len(batch)))
            local_max = max(local_max, float(model.grads.max()), -float(model.grads.min()))
            np.multiply(model.grads, scale, out=self._scaled)
            np.trunc(self._scaled, out=self._scaled)
            if index == 0:
                np.copyto(self.sums, self._scaled)
            else:
                np.copyto(self._wide, self._scaled)
                self.sums += self._wide
        return tally, local_max

    def to_gradients(self, sums: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Reduced grid sums back to gradients in ``out`` (the model's dtype): one rounding."""
        np.multiply(sums, math.ldexp(1.0, -self.used_exponent), out=sums)
        np.copyto(out, sums, casting="same_kind")
        return out

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        """Tally over fixed chunks of ``batch_size`` rows (the same cut for any N), each on the
        loss grid, so the reduced metrics are bitwise the same at any rank count."""
        tally = np.zeros(3)
        for lo, hi in group_bounds(len(x), batch_size, self.comm.rank, self.comm.size):
            tally += on_loss_grid(evaluate_rows(model, x, y, lo, hi, batch_size))
        return tally
