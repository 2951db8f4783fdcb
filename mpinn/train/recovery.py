"""Keep training when a rank dies (``on_failure="shrink"``): the survivors shrink, roll back
to the last unit of work every one of them finished, and redo from there; no step is lost.

The loop runs in units (a step, or an epoch's end). MPI's fault tolerance (ULFM) reports a
death to a survivor at its next call on the communicator, and a call can complete on some
survivors and fail on others, so survivors can be one unit apart: a rank can finish unit j
only if every rank entered j's reductions, hence had finished unit j - 1. Each rank therefore
keeps what the last two units started from (the loop's small state: position, tallies,
counters, learning rate) and the parameters and optimizer state from just before its last
update (the strategy calls :meth:`Recovery.before_update`; an update needs the step's
reduction, which no rank finishes while another is a unit behind). On :class:`RankLost`,
in one place: the communicator is revoked and shrunk to the survivors (in place, so every
holder of it goes on with it), the survivors take the lowest unit any of them is in, each
puts back what that unit started from, and the unit runs again on the survivors, whose
rank 0 now prints and writes. A step's global batch is split over the survivors as it was
over all, so the batch does not change; in deterministic mode the sums are exact and the
run ends with the same bits as one without a failure. Another failure during a recovery
starts it over.

A unit redone on a rank that had finished it calls that unit's callbacks again there; the
metrics log and the checkpoints skip what was already written.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from mpinn.errors import RankLost


def kept(obj: Any) -> dict[str, Any]:
    """An object's attributes as they are now (arrays copied: the loop adds into them)."""
    return _copied(vars(obj))


def put_back(obj: Any, attributes: dict[str, Any]) -> None:
    """Give an object the attributes :func:`kept` took (copied again: a redo may fail too)."""
    vars(obj).update(_copied(attributes))


def _copied(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in attributes.items()}


class Recovery:
    """Runs the loop's units for one ``fit`` so that a rank's death is survived (see above).

    ``mark()`` returns the loop's small state at a unit's start and ``restore(state)`` puts it
    back; ``on_ranks_lost(dead)`` tells the loop's writers that the communicator shrank."""

    def __init__(self, model, strategy, mark: Callable[[], Any], restore: Callable[[Any], None],
                 on_ranks_lost: Callable[[list[int]], None]) -> None:
        self.model, self.strategy, self.comm = model, strategy, strategy.comm
        self.mark, self.restore, self.on_ranks_lost = mark, restore, on_ranks_lost
        self.unit = 0  # units finished on this rank
        self.marks: dict[int, Any] = {}
        self.kept_unit: int | None = None  # the unit whose update the kept arrays precede
        self.params: np.ndarray | None = None
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0
        strategy.update_hook = self.before_update

    def run(self, unit: Callable[[], None]) -> None:
        """Run one unit of the loop; after a rank's death, recover and run it again."""
        while True:
            self.marks[self.unit] = (self.mark(), self._settings(), self.strategy.redo_state())
            self.marks.pop(self.unit - 2, None)
            try:
                unit()
            except RankLost as lost:
                if lost.why:  # final: what was lost no shrink brings back (see mpinn.train.rank_loss)
                    raise
                self._recover(lost)
            else:
                self.unit += 1
                return

    def before_update(self) -> None:
        """Keep this rank's parameters and optimizer state as they are before an update."""
        params, optimizer = self.strategy.local_state(self.model)
        self.params = _into(self.params, params)
        self.state = {name: _into(self.state.get(name), array) for name, array in optimizer.state.items()}
        self.steps, self.kept_unit = optimizer.steps, self.unit

    def _recover(self, lost: RankLost) -> None:
        dead = set(lost.dead_ranks)
        while True:
            try:
                dead |= set(self.comm.shrink())
                target = min(self.comm.allgather_obj(self.unit))
                break
            except RankLost as again:  # another death during the recovery: start it over
                dead |= set(again.dead_ranks)
        self._roll_back(target)
        self.on_ranks_lost(sorted(dead))
        if self.comm.is_root:
            print(f"mpinn: rank(s) {', '.join(map(str, sorted(dead)))} of the job died; "
                  f"continuing on {self.comm.size} rank(s)", file=sys.stderr, flush=True)

    def _roll_back(self, target: int) -> None:
        """Put back what unit ``target`` started from (this rank is in it or one unit past it)."""
        loop, settings, redo = self.marks[target]
        self.restore(loop)
        self._load_settings(settings)
        self.strategy.load_redo_state(redo)
        if self.kept_unit is not None and self.kept_unit >= target:
            params, optimizer = self.strategy.local_state(self.model)
            params[...] = self.params
            optimizer.state = {name: array.copy() for name, array in self.state.items()}
            optimizer.steps = self.steps
            self.kept_unit = None
        self.unit = target
        self.marks = {u: m for u, m in self.marks.items() if u <= target}

    def _settings(self) -> tuple[dict[str, Any], Any]:
        """The optimizer's hyperparameters and schedule position (callbacks and schedules
        change them between steps)."""
        optimizer = self.model.optimizer
        schedule = optimizer.schedule.state_dict() if optimizer.schedule is not None else None
        return copy.deepcopy(optimizer.hyperparameters()), schedule

    def _load_settings(self, settings: tuple[dict[str, Any], Any]) -> None:
        hyper, schedule = settings
        for name, value in hyper.items():
            setattr(self.model.optimizer, name, value)
        if schedule is not None:
            self.model.optimizer.schedule.load_state_dict(schedule)


def _into(buffer: np.ndarray | None, array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` in ``buffer`` when it fits (no allocation at every step)."""
    if buffer is None or buffer.shape != array.shape or buffer.dtype != array.dtype:
        return array.copy()
    np.copyto(buffer, array)
    return buffer
