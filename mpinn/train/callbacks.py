"""Callbacks: what rank 0 shows and writes while training (other ranks stay quiet by default)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO


class Callback:
    """Hooks called by the training loop on every rank; each callback decides who acts."""

    def on_train_begin(self, epochs: int, steps_per_epoch: int, start_step: int = 0) -> None:
        """Training is about to start (at ``start_step`` > 0 when resumed from a checkpoint)."""

    def on_step_end(self, record: dict[str, Any]) -> None:
        """A logging window of steps ended; ``record`` holds metrics reduced over ranks."""

    def on_epoch_end(self, epoch: int, values: dict[str, Any]) -> None:
        """An epoch ended; ``values`` holds its reduced loss/accuracy (and validation)."""

    def on_train_end(self) -> None:
        """Training finished."""


def format_values(values: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items() if k not in ("step", "epoch"))


class ProgressLogger(Callback):
    """Per-epoch lines (or a tqdm bar on a terminal) from rank 0, or from every rank if asked."""

    def __init__(self, rank: int, all_ranks: bool = False, stream: TextIO | None = None) -> None:
        self.active = rank == 0 or all_ranks
        self.prefix = f"[rank {rank}] " if all_ranks else ""
        self.stream = stream or sys.stdout
        self.bar = None

    def on_train_begin(self, epochs: int, steps_per_epoch: int, start_step: int = 0) -> None:
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.use_bar = self.active and not self.prefix and self.stream.isatty() and _has_tqdm()
        self.epoch_start = time.perf_counter()

    def on_step_end(self, record: dict[str, Any]) -> None:
        if self.use_bar:
            done_in_epoch = record["step"] - record["epoch"] * self.steps_per_epoch
            self._bar().update(done_in_epoch - self._bar().n)
            self._bar().set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.3f}")

    def _bar(self):
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.steps_per_epoch, leave=False, file=self.stream)
        return self.bar

    def on_epoch_end(self, epoch: int, values: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.active:
            seconds = time.perf_counter() - self.epoch_start
            print(f"{self.prefix}epoch {epoch + 1}/{self.epochs}  {format_values(values)}  "
                  f"({seconds:.2f} s)", file=self.stream, flush=True)
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

    def on_train_begin(self, epochs: int, steps_per_epoch: int, start_step: int = 0) -> None:
        """A fresh run starts an empty log; a resumed one appends to it."""
        if self.active:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if start_step == 0:
                self.path.write_text("")

    def _write(self, record: dict[str, Any]) -> None:
        if self.active:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def on_step_end(self, record: dict[str, Any]) -> None:
        self._write({"event": "step", **record})

    def on_epoch_end(self, epoch: int, values: dict[str, Any]) -> None:
        self._write({"event": "epoch", "epoch": epoch, **values})


def default_callbacks(comm, verbose: int = 1, metrics_path: str | Path | None = None,
                      verbose_ranks: bool = False) -> list[Callback]:
    callbacks: list[Callback] = []
    if verbose:
        callbacks.append(ProgressLogger(comm.rank, all_ranks=verbose_ranks))
    if metrics_path:
        callbacks.append(MetricsLog(metrics_path, comm.rank))
    return callbacks
