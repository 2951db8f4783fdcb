"""Progress lines while an epoch runs, wherever it runs (a terminal, mpiexec's pipes, Slurm).

A printed line needs the loss reduced over the ranks, so every rank must join the same
reductions at the same steps: the interval is fixed in steps and agreed once, never decided
from one rank's clock. With an explicit interval (``fit(log_every=N)``, ``--log-every N``)
a line comes every N steps. Otherwise the ranks time the first steps, agree on the mean step
time with one reduction, and pick the interval that prints a line about every
``MPINN_PROGRESS_SECONDS`` seconds (default 10). The metrics records are not affected.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from mpinn.errors import ConfigError
from mpinn.nn.metrics import summarize

PROBE_STEPS = 3


def counted(tally: np.ndarray, replicated: bool, is_root: bool) -> np.ndarray:
    """What a rank adds to a reduction of ``tally``: all of it, or, where every rank holds the
    sums over all ranks already (``replicated``: under ``on_failure="shrink"``, so that they
    outlive any rank), rank 0's alone."""
    return np.zeros_like(tally) if replicated and not is_root else tally


def progress_seconds() -> float:
    """Seconds between progress lines when no interval is given (``MPINN_PROGRESS_SECONDS``)."""
    value = os.environ.get("MPINN_PROGRESS_SECONDS", "10")
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"MPINN_PROGRESS_SECONDS must be a positive number of seconds, got {value!r}")
    return seconds


class ProgressTicker:
    """Counts steps and, every ``every`` of them, hands callbacks a reduced progress record."""

    def __init__(self, strategy, total_steps: int, start_step: int, every: int | None,
                 replicated: bool = False) -> None:
        self.strategy, self.total, self.every, self.replicated = strategy, total_steps, every, replicated
        self.first_step, self.started = start_step, time.perf_counter()
        self.target = None if every else progress_seconds()
        self._reset(start_step)

    def _reset(self, step: int) -> None:
        self.tally, self.since_step, self.since = np.zeros(3), step, time.perf_counter()

    def add(self, part: np.ndarray, step: int, callbacks: list) -> None:
        self.tally += part
        done = step - self.first_step
        if self.every is None:
            if done == min(PROBE_STEPS, self.total - self.first_step):
                self.every = self._agreed_interval(done)
            return
        if (step - self.since_step) % self.every == 0:
            record = self._record(step)
            for callback in callbacks:
                callback.on_progress(record)
            self._reset(step)

    def _agreed_interval(self, steps_done: int) -> int:
        """Steps per line from the ranks' mean step time over the first steps (one reduction)."""
        elapsed = np.array([time.perf_counter() - self.started, 1.0])
        total_seconds, ranks = self.strategy.reduce_sum(elapsed)
        step_seconds = total_seconds / max(ranks, 1.0) / max(steps_done, 1)
        return max(1, int(self.target / max(step_seconds, 1e-9)))

    def _record(self, step: int) -> dict[str, Any]:
        reduced = self.strategy.reduce_sum(counted(self.tally, self.replicated, self.strategy.comm.is_root))
        now = time.perf_counter()
        loss, accuracy = summarize(reduced)
        elapsed = now - self.started
        window = now - self.since
        rate = (step - self.first_step) / elapsed if elapsed > 0 else 0.0
        return {"step": step, "steps": self.total, "loss": loss, "accuracy": accuracy,
                "samples_per_s": reduced[2] / window if window > 0 else 0.0,
                "elapsed_s": elapsed, "eta_s": (self.total - step) / rate if rate > 0 else 0.0}


def format_seconds(seconds: float) -> str:
    """A duration with sensible precision: 3.2 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def format_rate(samples_per_s: float) -> str:
    return f"{samples_per_s:,.0f} samples/s" if samples_per_s >= 100 else f"{samples_per_s:.1f} samples/s"
