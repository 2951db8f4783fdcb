"""A watchdog that turns a communication call stuck for too long into a reported abort.

A rank that died, deadlocked or never reaches a collective would leave the others waiting
for ever; the watchdog thread sees that a call has been waiting longer than its limit,
prints which operation, at which step, on which rank, and aborts the whole job.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mpinn.errors import require_positive


class Watchdog:
    """Shared by a communicator and its splits; ``step`` is kept current by the training loop."""

    def __init__(self, timeout: float, rank: int, abort: Callable[[], None]) -> None:
        require_positive("watchdog timeout", timeout)
        self.timeout, self.rank, self.step = float(timeout), rank, 0
        self._abort = abort
        self._waiting: tuple[str, float] | None = None  # (operation, since): swapped as one
        self._thread = threading.Thread(target=self._watch, name="mpinn-watchdog", daemon=True)
        self._thread.start()

    @contextmanager
    def watch(self, operation: str) -> Iterator[None]:
        """Mark a blocking call for the duration of the ``with`` block."""
        self._waiting = (operation, time.monotonic())
        try:
            yield
        finally:
            self._waiting = None

    def _watch(self) -> None:
        poll = min(1.0, self.timeout / 4)
        while True:
            time.sleep(poll)
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[1] > self.timeout:
                self._fire(waiting[0])
                return

    def _fire(self, operation: str) -> None:
        sys.stderr.write(f"[rank {self.rank}] watchdog: {operation} at step {self.step} has not "
                         f"completed after {self.timeout:g} s; aborting the job\n")
        sys.stderr.flush()
        self._abort()
