"""Deterministic mode: gradients summed exactly, so results do not depend on the rank count.

Floating-point sums change with their order, and the order changes with how a batch and a
reduction are split over ranks. Here the global batch is cut into groups of ``group_size``
consecutive samples, fixed whatever the number of ranks; each rank takes whole groups, and
each group's gradient (its own product terms, so the same bits on any rank) is put on a
fixed-point grid: multiplied by 2**s and truncated to a whole number of the integer type as
wide as the model's floats (int32 for float32, int64 for float64). Integers add exactly in
any order, so the local sums and the Allreduce are exact and the result is a function of
the groups alone. It is converted back to the model's dtype once.

The exponent s is agreed by every rank and independent of N: it follows from the largest
group-gradient magnitude of the previous step (an Allreduce MAX, exact), leaving ``headroom``
bits for growth below the point where the sum of every group could overflow; a step whose
gradients outgrow it is recomputed with a coarser grid. Losses are put on a grid too, so
logged metrics match across rank counts as well.

No term and no sum overflows: a piece of a group's gradient is cast only if its largest
magnitude (its max and min, exact) times 2**s is below 2**bits / n_groups, so any sum of the
step's n_groups terms stays below 2**bits; a piece above it is not cast, and the step is
recomputed on a coarser grid. (The cast's invalid flag would only show a term past 2**bits,
not past 2**bits / n_groups, so it cannot replace the max and min.) A non-finite piece
makes the step's gradient NaN for the loop's guard.

What costs time is kept per group only where the arithmetic needs it. Each whole group's
rows start a slot of ``call_pitch`` rows (the group size, or up to 1/16 more of zero rows: the
fewest at which the BLAS gives a row the same bits in a call over several slots as in a call
of its slot alone; a short last group has a slot of its own size), so forward and input gradients run on all of a rank's slots in one call
per product (one call per slot where ``rows_independent_of_call`` finds otherwise for the
rank's slot count). The weight gradients are computed per group in pieces of whole rows of
W that fit the cache (``Layer.param_grad_pieces``): every group's piece in turn goes straight
onto the grid and into the same slice of the sums, so neither a group's whole gradient nor
the sums go out to memory and back once per group. The loss gradient is multiplied by 2**s,
so the pieces arrive on the grid's scale and need only the truncating cast: binary floating
point rounds alike at any power-of-two scale short of overflow and subnormals, and even
there it is the same arithmetic on every rank count (s is agreed); an overflow to infinity
fails the step like any non-finite gradient.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mpinn.parallel.comm import Communicator
from mpinn.parallel.partitions import aligned_range
from mpinn.parallel.reducers import Reducer
from mpinn.nn.step import call_pitch, evaluate_rows, group_gradients, rows_independent_of_call

GRID_INTEGERS = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}
LOSS_GRID = 2.0 ** -20  # per-group loss sums are rounded to this grid (exact sums in float64)
CHUNK = 1 << 17  # elements a piece: with its terms and its slice of the sums, 1.5 MB in cache



def on_loss_grid(tally: np.ndarray) -> np.ndarray:
    """The tally with its loss sum rounded to ``LOSS_GRID`` (counts are whole already)."""
    tally[0] = np.round(tally[0] / LOSS_GRID) * LOSS_GRID
    return tally


def group_bounds(n: int, group_size: int, rank: int, size: int) -> list[tuple[int, int]]:
    """The groups [lo, hi) of positions 0..n that ``rank`` of ``size`` takes: whole groups,
    contiguous, the same cut for any ``size``."""
    return groups_in(*aligned_range(n, group_size, rank, size), group_size)


def groups_in(lo: int, hi: int, group_size: int) -> list[tuple[int, int]]:
    """The groups [a, b) of positions lo..hi, ``group_size`` each (the last one may be short)."""
    return [(a, min(a + group_size, hi)) for a in range(lo, hi, group_size)]


class ExactGradients:
    """Sums of group gradients that are exact, hence independent of the grouping over ranks."""

    def __init__(self, comm: Communicator, group_size: int = 128, headroom: int = 3) -> None:
        self.comm, self.group_size, self.headroom = comm, group_size, headroom
        self.exponent: int | None = None  # of the grid in use, agreed on every rank

    def setup(self, net) -> None:
        integer = GRID_INTEGERS[net.grads.dtype]
        self.bits = np.iinfo(integer).bits - 1  # magnitudes below 2**bits fit
        self.sums = np.zeros(net.grads.size, integer)
        widest = max((shape[-1] for i in net.param_layers
                      for shape in net.layers[i].param_shapes().values()), default=1)
        self.scratch = np.empty(max(min(CHUNK, self.sums.size), widest), net.grads.dtype)
        self._term = np.empty(self.scratch.size, integer)
        self._grads = net.grads
        starts = [net.layer_offsets[i] for i in net.param_layers] + [net.grads.size]
        self._spans = dict(zip(net.param_layers, zip(starts, starts[1:])))
        self._rowwise: dict[tuple[int, ...], bool] = {}  # whether one call serves these slots
        self._pitch: int | None = None  # rows of a group's slot (see call_pitch)

    def accumulate(self, net, head, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   reducer=None, span: tuple[int, int] | None = None) -> np.ndarray:
        """``net``'s gradients through ``head`` of the groups of positions ``span`` (whole
        groups; this rank's share over ``comm`` by default) of the global batch summed on the
        grid into ``sums``; returns their tally.
        Recomputes the step on a coarser grid if the gradients outgrew the grid.

        ``reducer.ready(lo)`` (optional; see :mod:`mpinn.parallel.reducers`) is called as soon as
        ``sums[lo:]`` is final, so its reduction can overlap the rest of backward; before a
        retry, ``reducer.finish()`` completes what is in flight and ``reducer.begin()`` restarts."""
        span = span or aligned_range(len(batch), self.group_size, self.comm.rank, self.comm.size)
        groups = groups_in(*span, self.group_size)
        return self.summed(lambda: self._grid_sums(net, head, x, y, batch, groups),
                           -(-len(batch) // self.group_size), len(groups), reducer)

    def summed(self, compute, n_groups: int, n_local: int, reducer=None,
               agree: Communicator | None = None) -> np.ndarray:
        """``compute()`` puts this rank's ``n_local`` groups (of the step's ``n_groups``) on the
        grid, each group's gradient through ``take`` (piece by piece, group 0 of a piece first)
        or ``take_whole`` (group by group), and returns their tally; it is run again on a
        coarser grid while the gradients outgrow the grid, as agreed over ``agree`` (``comm``
        by default; every rank that runs the step). Returns the tally. ``reducer``: as in
        ``accumulate``."""
        self._reducer = reducer
        while True:
            if self.exponent is None:
                self.exponent = self._exponent_for(1.0, n_groups)
            self._start_grid(n_groups, n_local)
            tally = compute() if n_local else self._no_groups()
            local_max = self._largest if self._finite else math.inf
            largest = (agree or self.comm).Allreduce(np.array([local_max]), op="max")[0]
            if not math.isfinite(largest):  # the step's gradients are NaN: the loop's guard acts
                self.used_exponent = None  # so to_gradients hands the guard NaN, not integers
                return tally
            fits = math.ldexp(largest, self.exponent) * n_groups < 2.0 ** self.bits
            used, self.exponent = self.exponent, self._exponent_for(largest, n_groups)
            if fits:
                self.used_exponent = used
                return tally
            if reducer is not None:
                reducer.finish()
                reducer.begin()

    def _exponent_for(self, largest: float, n_groups: int) -> int:
        """The grid exponent leaving ``headroom`` bits above ``largest`` for n_groups terms."""
        if largest == 0.0:
            return self.exponent if self.exponent is not None else 0
        top = math.frexp(largest)[1] + math.ceil(math.log2(n_groups))
        return max(-100, min(100, self.bits - self.headroom - top))

    def _start_grid(self, n_groups: int, n_local: int) -> None:
        self.scale = math.ldexp(1.0, self.exponent)
        self._scale = self._grads.dtype.type(self.scale)
        self._limit = 2.0 ** self.bits / n_groups  # each term below it: no sum can overflow
        self._largest, self._finite = 0.0, True
        self._last, self._taken = n_local - 1, 0

    def _no_groups(self) -> np.ndarray:
        """Nothing to add; still every reduction, in the others' order."""
        self.sums.fill(0)
        if self._reducer is not None:
            self._reducer.ready(0)
        return np.zeros(3)

    def _grid_sums(self, net, head, x, y, batch, groups: list[tuple[int, int]]) -> np.ndarray:
        """Every group of ``groups`` on the grid, summed into ``sums``; their tally. Each whole
        group's rows start a slot of ``call_pitch`` rows, zeros after them (a short last group
        fills a slot of its own size): the products see every group as they would see it
        alone in a call of its slot."""
        if self._pitch is None:
            self._pitch = call_pitch(net, self.group_size)
        sizes = [hi - lo for lo, hi in groups]
        starts = list(itertools.accumulate(
            (self._pitch if n == self.group_size else n for n in sizes), initial=0))
        xb = np.zeros((starts[-1], x.shape[1]), net.dtype)
        yb = np.zeros((starts[-1], *y.shape[1:]), y.dtype)
        for (lo, hi), a in zip(groups, starts):
            xb[a:a + hi - lo], yb[a:a + hi - lo] = x[batch[lo:hi]], y[batch[lo:hi]]
        whole = list(zip(starts, starts[1:]))
        calls = None if self._rows_independent(net, whole) else [slice(a, b) for a, b in whole]
        slots = [(a, a + n) for a, n in zip(starts, sizes)]
        tallies = group_gradients(net, head, xb, yb, len(batch), slots, self, calls, self.scale)
        return np.sum([on_loss_grid(t) for t in tallies], axis=0)

    def _rows_independent(self, net, slots: list[tuple[int, int]]) -> bool:
        key = tuple(b - a for a, b in slots)
        if key not in self._rowwise:
            self._rowwise[key] = rows_independent_of_call(net, slots)
        return self._rowwise[key]

    def take_whole(self) -> None:
        """The next group's gradient of every layer (the whole of the model's grads, scaled
        here in place: the caller clears them next) onto the grid, into ``sums``; the first
        group taken in a step writes, the others add."""
        for layer in sorted(self._spans, reverse=True):
            start, stop = self._spans[layer]
            for lo in range(start, stop, CHUNK):
                part = self._grads[lo:min(lo + CHUNK, stop)]
                self.take(lo, self._taken, np.multiply(part, self._scale, out=part))
            if self._taken == self._last:
                self.layer_done(start)
        self._taken += 1

    def take(self, offset: int, k: int, values: np.ndarray) -> None:
        """Group k's gradient at ``offset``, times ``2**exponent`` already (``scale``: the
        loss gradient was multiplied by it, exactly), onto the grid: truncated into ``sums``,
        group 0 writing, the others adding (see ``Sequential.backward_by_rows``)."""
        top = max(float(np.maximum.reduce(values)), -float(np.minimum.reduce(values)))
        if not math.isfinite(top):
            self._finite = False  # the step fails on every rank after the reductions
            return
        self._largest = max(self._largest, math.ldexp(top, -self.exponent))
        if top >= self._limit:
            return  # this step is recomputed on a coarser grid: no overflowing cast
        sums = self.sums[offset:offset + values.size]
        if k == 0:
            np.copyto(sums, values, casting="unsafe")  # the cast truncates
        else:
            term = self._term[:values.size]
            np.copyto(term, values, casting="unsafe")
            np.add(sums, term, out=sums)

    def layer_done(self, offset: int) -> None:
        """``sums[offset:]`` is final: its reduction may start."""
        if self._reducer is not None:
            self._reducer.ready(offset)

    def to_gradients(self, sums: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Reduced grid sums back to gradients in ``out`` (the model's dtype): one rounding.
        After a step with a NaN or infinite gradient (no grid), NaN."""
        if self.used_exponent is None:
            out.fill(np.nan)
            return out
        np.copyto(out, sums, casting="unsafe")  # integers round to out's dtype once
        return np.multiply(out, out.dtype.type(math.ldexp(1.0, -self.used_exponent)), out=out)  # exact


class ExactSums(Reducer):
    """The exact reducer (see :mod:`mpinn.parallel.reducers` for the interface): each rank's
    whole groups of ``group_size`` samples on the grid, their integer sums carried over
    ``comm`` by ``carrier`` (a float reducer's exchange: a bucketed allreduce, or a
    reduce-scatter), then back to the model's floats once. On a pipeline stage every group is
    one micro-batch, taken onto the grid after its backward. Tallies go on the loss grid,
    group by group, so logged metrics match at any rank count too."""

    def __init__(self, comm: Communicator, group_size: int, carrier: Reducer) -> None:
        self.exact = ExactGradients(comm, group_size)
        self.comm, self.carrier, self.unit = comm, carrier, group_size
        self.scatters = carrier.scatters

    def setup(self, net, buffer: np.ndarray | None = None) -> None:
        self.exact.setup(net)
        self.carrier.setup(net, self.exact.sums)
        self._grads = net.grads

    def accumulate(self, net, head, x: np.ndarray, y: np.ndarray, batch: np.ndarray, lo: int,
                   hi: int, micro_batches: int = 1) -> np.ndarray:
        """Every group is its own micro-batch, so ``micro_batches`` changes nothing."""
        self.carrier.begin()
        return self.exact.accumulate(net, head, x, y, batch, self.carrier if self.carrier.overlaps else None,
                                     (lo, hi))

    def chunks(self, n_rows: int, micro_batches: int) -> list[tuple[int, int]]:
        """One group a micro-batch: ``micro_batches`` follows from ``group_size``."""
        return groups_in(0, n_rows, self.unit)

    def accumulate_by(self, net, run, n_chunks: int, n_global: int,
                      agree: Communicator) -> np.ndarray:
        """The groups' gradients go on the grid one by one, after each backward; a step whose
        gradients outgrow the grid runs again on every rank of ``agree``."""
        def after_backward() -> None:
            self.exact.take_whole()
            net.zero_grad()
        net.zero_grad()
        self.carrier.begin()
        hooks = self.carrier if self.carrier.overlaps else None
        return self.exact.summed(lambda: run(None, after_backward), -(-n_global // self.unit),
                                 n_chunks, hooks, agree)

    def summable(self, tally: np.ndarray) -> np.ndarray:
        return on_loss_grid(tally)

    def finish(self) -> np.ndarray:
        sums = self.carrier.finish()
        return self.exact.to_gradients(sums, self._grads[:sums.size])

    def evaluate(self, net, head, x: np.ndarray, y: np.ndarray, lo: int, hi: int,
                 batch_size: int) -> np.ndarray:
        tally = np.zeros(3)
        for a, b in groups_in(lo, hi, batch_size):
            tally += on_loss_grid(evaluate_rows(net, head, x, y, a, b, batch_size))
        return tally

    def evaluation_unit(self, batch_size: int) -> int:
        """Fixed chunks of ``batch_size`` rows: the same cut for any rank count."""
        return batch_size

    def with_state(self, optimizer_state: dict) -> dict:
        """Plus the grid exponent: a resumed run must sum on the same grid, or its truncations
        (hence its bits) differ from an uninterrupted run's."""
        if self.exact.exponent is None:
            return optimizer_state
        return {**optimizer_state, "grid_exponent": self.exact.exponent}

    def redo_state(self) -> int | None:
        """The grid exponent a step starts from (each step sets the next one's)."""
        return self.exact.exponent

    def load_redo_state(self, state: int | None) -> None:
        self.exact.exponent = state

    def take_state(self, optimizer_state: dict) -> dict:
        """Without the grid exponent, which goes back to the exact sums."""
        state = dict(optimizer_state)
        exponent = state.pop("grid_exponent", None)
        if exponent is not None:
            self.exact.exponent = int(exponent)
        return state


def exact_if(deterministic: bool, group_size: int, carrier: Reducer) -> Reducer:
    """``carrier``; in deterministic mode, the exact sums of groups of ``group_size`` that it
    carries."""
    return ExactSums(carrier.comm, group_size, carrier) if deterministic else carrier
