"""Callbacks: what rank 0 shows and writes while training (other ranks stay quiet by default)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mpinn.io import atomic_write
from mpinn.train.progress import format_rate, format_seconds


class Callback:
    """Hooks called by the training loop on every rank; each callback decides who acts."""

    def on_train_begin(self, epochs: int, steps_per_epoch: int, start_step: int = 0,
                       start_epoch: int = 0) -> None:
        """Training is about to start: at ``start_step`` in ``start_epoch`` (0-based) when
        resumed from a checkpoint."""

    def on_step_end(self, record: dict[str, Any]) -> None:
        """A logging window of steps ended; ``record`` holds metrics reduced over ranks."""

    def on_progress(self, record: dict[str, Any]) -> None:
        """A progress point (see :mod:`mpinn.train.progress`): step, steps, loss, accuracy,
        samples_per_s, elapsed_s and eta_s, reduced over ranks."""

    def on_epoch_end(self, epoch: int, values: dict[str, Any]) -> None:
        """An epoch ended; ``values`` holds its reduced loss/accuracy (and validation)."""

    def on_train_end(self) -> None:
        """Training finished."""


NOT_SHOWN = ("step", "epoch", "samples", "seconds")


def format_values(values: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items() if k not in NOT_SHOWN)


class ProgressLogger(Callback):
    """What rank 0 (or every rank, if asked) shows, with Keras' ``verbose`` meanings.

    verbose 1: on a terminal a tqdm bar per epoch; otherwise (mpiexec and Slurm pipe the
    output) a line at every progress point: step/total, loss, samples/s, elapsed and ETA.
    verbose 2: one line per epoch. Epoch lines show the epoch's time and samples/s.
    """

    def __init__(self, rank: int, all_ranks: bool = False, stream: TextIO | None = None,
                 verbose: int = 1) -> None:
        self.active = rank == 0 or all_ranks
        self.prefix = f"[rank {rank}] " if all_ranks else ""
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.bar = None

    def on_train_begin(self, epochs: int, steps_per_epoch: int, start_step: int = 0,
                       start_epoch: int = 0) -> None:
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.use_bar = (self.active and self.verbose == 1 and not self.prefix
                        and self.stream.isatty() and _has_tqdm())
        self.epoch_start = time.perf_counter()

    def on_step_end(self, record: dict[str, Any]) -> None:
        if self.use_bar:
            done_in_epoch = record["step"] - record["epoch"] * self.steps_per_epoch
            self._bar().update(done_in_epoch - self._bar().n)
            self._bar().set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.3f}")

    def on_progress(self, record: dict[str, Any]) -> None:
        if self.active and self.verbose == 1 and not self.use_bar:
            print(f"{self.prefix}step {record['step']}/{record['steps']}  loss {record['loss']:.4f}  "
                  f"{format_rate(record['samples_per_s'])}  elapsed {format_seconds(record['elapsed_s'])}"
                  f"  ETA {format_seconds(record['eta_s'])}", file=self.stream, flush=True)

    def _bar(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.steps_per_epoch, leave=False, file=self.stream)
        return self.bar

    def on_epoch_end(self, epoch: int, values: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.active and self.verbose:
            seconds = time.perf_counter() - self.epoch_start
            rate = format_rate(values.get("samples", 0) / seconds) if seconds > 0 else ""
            print(f"{self.prefix}epoch {epoch + 1}/{self.epochs}  {format_values(values)}  "
                  f"({format_seconds(seconds)}, {rate})", file=self.stream, flush=True)
        self.epoch_start = time.perf_counter()


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class MetricsLog(Callback):
    """Rank 0 appends one JSON line per logging window and per epoch."""

    def __init__(self, path: str | Path, rank: int) -> None:
        self.path = Path(path)
        self.active = rank == 0

    def on_train_begin(self, epochs: int, steps_per_epoch: int, start_step: int = 0,
                       start_epoch: int = 0) -> None:
        """A fresh run starts an empty log (an earlier run's log is moved aside, never
        overwritten); a resumed one keeps the records up to its checkpoint and appends."""
        if not self.active:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_step == start_epoch == 0:
            self._move_earlier_log_aside()
            self.path.write_text("")
        elif self.path.exists():
            self._keep_records_before(start_step, start_epoch)

    def _move_earlier_log_aside(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.previous-{stamp}")
        copy = 1
        while aside.exists():
            copy += 1
            aside = self.path.with_name(f"{self.path.name}.previous-{stamp}-{copy}")
        self.path.rename(aside)
        print(f"mpinn: {self.path} held an earlier run's log: moved to {aside.name}", flush=True)

    def _keep_records_before(self, step: int, epoch: int) -> None:
        """Drop the records written after the checkpoint the run resumes from (steps after
        ``step``, epochs from ``epoch`` on) and a line cut short by a crash; rewrite atomically."""
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.endswith("\n") and _recorded_before(line, step, epoch)]
        if kept != lines:
            atomic_write(self.path, lambda f: f.write("".join(kept).encode()))
            print(f"mpinn: {self.path}: {len(lines) - len(kept)} record(s) written after the "
                  f"checkpoint dropped; the run continues from step {step}", flush=True)

    def _write(self, record: dict[str, Any]) -> None:
        if self.active:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def on_step_end(self, record: dict[str, Any]) -> None:
        self._write({"event": "step", **record})

    def on_epoch_end(self, epoch: int, values: dict[str, Any]) -> None:
        self._write({"event": "epoch", "epoch": epoch, **values})


def _recorded_before(line: str, step: int, epoch: int) -> bool:
    """Whether a log line belongs before a checkpoint at ``step`` with ``epoch`` epochs done
    (a line that is not a record is kept as it is)."""
    try:
        record = json.loads(line)
    except ValueError:
        return True
    if not isinstance(record, dict):
        return True
    if record.get("event") == "epoch":
        return record.get("epoch", -1) < epoch
    return record.get("step", 0) <= step


def default_callbacks(comm, verbose: int = 1, metrics_path: str | Path | None = None,
                      verbose_ranks: bool = False) -> list[Callback]:
    callbacks: list[Callback] = []
    if verbose:
        callbacks.append(ProgressLogger(comm.rank, all_ranks=verbose_ranks, verbose=verbose))
    if metrics_path:
        callbacks.append(MetricsLog(metrics_path, comm.rank))
    return callbacks
