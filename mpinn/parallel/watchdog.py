"""A watchdog that turns a communication call stuck for too long into a reported abort.

A rank that died, deadlocked or never reaches a collective would leave the others waiting
for ever; the watchdog thread sees that a call has been waiting longer than its limit and
aborts the whole job. With heartbeat records (:mod:`mpinn.parallel.heartbeat`) it first
reads where every rank is, and the lowest-numbered rank that waits at the collective and is
still responding prints one report naming the ranks missing from it; the others stay quiet.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mpinn.errors import require_positive
from mpinn.parallel.heartbeat import Beat, Heartbeat, read_beats

QUIET_RANKS_GRACE_SECONDS = 10.0  # a rank that does not report waits this long for the reporter


class Watchdog:
    """Shared by a communicator and its splits; ``step`` is kept current by the training loop."""

    def __init__(self, timeout: float, rank: int, abort: Callable[[], None],
                 heartbeat: Heartbeat | None = None) -> None:
        require_positive("watchdog timeout", timeout)
        self.timeout, self.rank, self.heartbeat = float(timeout), rank, heartbeat
        self._step = 0
        self._abort = abort
        self._waiting: tuple[str, float] | None = None  # (operation, since): swapped as one
        self._stop = threading.Event()
        self.poll = min(0.5, self.timeout / 4)
        self._thread = threading.Thread(target=self._watch, name="mpinn-watchdog", daemon=True)
        self._thread.start()

    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, step: int) -> None:
        self._step = step
        if self.heartbeat is not None:
            self.heartbeat.step = step

    @contextmanager
    def watch(self, operation: str) -> Iterator[None]:
        """Mark a blocking call for the duration of the ``with`` block."""
        self._waiting = (operation, time.monotonic())
        try:
            yield
        finally:
            self._waiting = None

    def stop(self) -> None:
        """End the watching thread (the communicator goes on unwatched)."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            if self.heartbeat is not None:
                self.heartbeat.beat_alive()
            waiting = self._waiting
            if waiting is not None and time.monotonic() - waiting[1] > self.timeout:
                self._fire(waiting[0])
                return

    def _fire(self, operation: str) -> None:
        headline = (f"[rank {self.rank}] watchdog: {operation} at step {self.step} has not "
                    f"completed after {self.timeout:g} s")
        if self.heartbeat is None:
            _say(f"{headline}; aborting the job\n")
        else:
            beat = self.heartbeat
            report = hang_report(beat, read_beats(beat.folder, beat.size, beat.group),
                                 stale_after=max(1.0, 4 * self.poll))
            if report is None:  # a lower rank reports; abort only if it never does
                time.sleep(QUIET_RANKS_GRACE_SECONDS)
            else:
                _say(f"{headline}; {report}aborting the job\n")
        self._abort()


def _say(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def hang_report(mine: Heartbeat, beats: dict[int, Beat], stale_after: float) -> str | None:
    """The report of a hang seen from ``mine``'s rank, or None when a lower rank that waits
    too and still responds will print it instead (every waiting rank's watchdog fires)."""
    now = time.time()
    me = beats[mine.rank]

    def responding(beat: Beat) -> bool:
        return now - beat.alive < stale_after

    waiting = [r for r, b in beats.items() if b.waiting and responding(b)]
    if min(waiting, default=mine.rank) < mine.rank:
        return None
    silent = [r for r, b in beats.items() if not responding(b)]
    elsewhere = [r for r, b in beats.items() if responding(b) and
                 not (b.waiting and b.sequence == me.sequence and b.operation == me.operation)]
    lines = [f"ranks not responding: {_ranks(silent)}; ranks not at this collective: "
             f"{_ranks(elsewhere)}"]
    lines += [f"  rank {r}: " + (_where(beats[r], now, responding(beats[r])) if r in beats else
                                 f"no heartbeat record in {mine.folder} (another node without a "
                                 f"shared folder?)") for r in range(mine.size)]
    if len(beats) < mine.size:
        lines.append(f"  (this report covers the {len(beats)} of {mine.size} ranks whose records "
                     f"it can see)")
    return "\n".join(lines) + "\n"


def _ranks(ranks: list[int]) -> str:
    return ", ".join(map(str, ranks)) or "none"


def _where(beat: Beat, now: float, responding: bool) -> str:
    call = f"{beat.operation or 'no call yet'} (call #{beat.sequence}) at step {beat.step}"
    state = (f"waiting in {call} for {now - beat.since:.1f} s" if beat.waiting
             else f"computing since {call} ended {now - beat.since:.1f} s ago")
    if responding:
        return state
    return f"NOT RESPONDING for {now - beat.alive:.1f} s (stopped or stuck); last record: {state}"
