"""Test-only fault injection: a named rank kills itself (SIGKILL) at an exact point of a step.

``MPINN_FAULT_INJECT="reduce:3:1"`` makes the rank that the launcher numbered 1 kill itself
in the gradient reduction of step 3; several faults are separated by commas
(``"forward:3:1,reduce:5:2"``). The points are ``forward`` (a step's start), ``reduce`` (its
gradient reduction, once some of it is under way) and ``checkpoint`` (a save at that step:
the writer dies with the file half-written). It exists so that the tests of
``--on-failure shrink`` kill a rank exactly where they mean to, not at a time; leave the
variable unset in real runs. Stdlib only.
"""

from __future__ import annotations

import os
import signal

from mpinn.launcher import launch_rank

VARIABLE = "MPINN_FAULT_INJECT"
POINTS = ("forward", "reduce", "checkpoint")


def planned(environ: dict[str, str] | None = None) -> set[tuple[str, int, int]]:
    """The (point, step, rank) faults the variable names; ValueError names a bad entry."""
    text = (os.environ if environ is None else environ).get(VARIABLE, "")
    faults = set()
    for entry in filter(None, text.split(",")):
        point, _, rest = entry.partition(":")
        step, _, rank = rest.partition(":")
        if point not in POINTS or not step.isdigit() or not rank.isdigit():
            raise ValueError(f"{VARIABLE}: {entry!r} is not point:step:rank with a point among "
                             f"{', '.join(POINTS)}")
        faults.add((point, int(step), int(rank)))
    return faults


def inject(point: str, step: int) -> None:
    """Kill this process if the variable names this point, step and launcher rank."""
    if VARIABLE in os.environ and (point, step, launch_rank()) in planned():
        os.kill(os.getpid(), signal.SIGKILL)
