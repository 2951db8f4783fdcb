"""Callbacks: what rank 0 shows and writes while training (other ranks stay quiet by default)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mpinn.io import atomic_write
from mpinn.train.progress import format_rate, format_seconds
from mpinn.train.state import ModelState, restore_state, take_state


class Callback:
    """Hooks the training loop calls on every rank, with Keras' names and arguments.

    Before training the loop hands each callback the model (``set_model``), the run's
    parameters (``set_params``: epochs, steps per epoch, verbose, and start_step and the 0-based
    start_epoch of a run resumed from a checkpoint) and the strategy
    (``set_strategy``). ``logs`` hold metrics already reduced over every rank and are the same
    on every rank, so a decision taken from them is taken alike everywhere. Setting
    ``model.stop_training`` ends training after the current step window or epoch; the loop
    makes every rank stop at the same step. Each callback decides who acts: files and
    printing belong to rank 0 (``is_root``).
    """

    model: Any = None
    strategy: Any = None
    params: dict[str, Any] = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def set_strategy(self, strategy) -> None:
        self.strategy = strategy

    @property
    def is_root(self) -> bool:
        """True on the rank that prints and writes (rank 0 of the strategy's communicator)."""
        return self.strategy is None or self.strategy.comm.is_root

    def take_state(self) -> ModelState | None:
        """Collective: the whole model's state (gathered on rank 0, None elsewhere)."""
        return take_state(self.model, self.strategy)

    def restore_state(self, state: ModelState | None, weights_only: bool = False) -> None:
        """Collective: every rank takes its part of rank 0's ``state``."""
        restore_state(self.model, self.strategy, state, weights_only)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Training is about to start (``params["start_step"]`` > 0 when resumed)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """An epoch (counted from 0) is about to start."""

    def on_step_end(self, record: dict[str, Any]) -> None:
        """A logging window of steps ended; ``record`` holds metrics reduced over ranks."""

    def on_progress(self, record: dict[str, Any]) -> None:
        """A progress point (see :mod:`mpinn.train.progress`): step, steps, loss, accuracy,
        samples_per_s, elapsed_s and eta_s, reduced over ranks."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """An epoch ended; ``logs`` hold its reduced loss/accuracy (and validation)."""

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Training finished (before the strategy hands the whole model to every rank)."""

    def on_ranks_lost(self, dead_ranks: list[int]) -> None:
        """Ranks died and training goes on over the survivors (``on_failure="shrink"``): the
        strategy's communicator shrank, so this rank's number, and whether it is the one
        that prints and writes (``is_root``), may have changed. The step or epoch end in
        flight is redone next, so hooks may see it again."""


NOT_SHOWN = ("step", "epoch", "samples", "seconds")  # bookkeeping in the logs, not metrics


def metric_logs(logs: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics of an epoch's logs (loss, accuracy, val_..., learning_rate)."""
    return {k: v for k, v in (logs or {}).items() if k not in NOT_SHOWN}


def format_values(values: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metric_logs(values).items())


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

    def on_ranks_lost(self, dead_ranks: list[int]) -> None:
        self.active = self.active or self.is_root

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.epochs, self.steps_per_epoch = self.params["epochs"], self.params["steps"]
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

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.active and self.verbose:
            logs = logs or {}
            seconds = time.perf_counter() - self.epoch_start
            rate = format_rate(logs.get("samples", 0) / seconds) if seconds > 0 else ""
            print(f"{self.prefix}epoch {epoch + 1}/{self.epochs}  {format_values(logs)}  "
                  f"({format_seconds(seconds)}, {rate})", file=self.stream, flush=True)
        self.epoch_start = time.perf_counter()


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class MetricsLog(Callback):
    """Rank 0 appends one JSON line per logging window and per epoch, each after the last one
    in the file: a record redone after a rank died is not written twice, and when the writer
    died, the new rank 0 goes on from the file's last record."""

    def __init__(self, path: str | Path, rank: int) -> None:
        self.path = Path(path)
        self.active = rank == 0
        self.last = (-1, -1)  # the (step, epoch) of the last step record and epoch record

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """A fresh run starts an empty log (an earlier run's log is moved aside, never
        overwritten); a resumed one keeps the records up to its checkpoint and appends."""
        if not self.active:
            return
        start_step, start_epoch = self.params.get("start_step", 0), self.params.get("start_epoch", 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_step == start_epoch == 0:
            self._move_earlier_log_aside()
            self.path.write_text("")
        elif self.path.exists():
            self._keep_records_before(start_step, start_epoch)
        self.last = _last_records(self.path)

    def on_ranks_lost(self, dead_ranks: list[int]) -> None:
        """The new rank 0 takes over the log where the one before it stopped."""
        if not self.active and self.is_root:
            self.active = True
            step, epoch = _last_records(self.path)
            self._keep_records_before(step, epoch + 1)  # drops a line cut short
            self.last = step, epoch

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
        if record["step"] > self.last[0]:
            self._write({"event": "step", **record})
            self.last = (record["step"], self.last[1])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch > self.last[1]:
            self._write({"event": "epoch", "epoch": epoch, **(logs or {})})
            self.last = (self.last[0], epoch)


def _last_records(path: Path) -> tuple[int, int]:
    """The step of the last step record and the epoch of the last epoch record in a log."""
    step = epoch = -1
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "epoch":
            epoch = max(epoch, record.get("epoch", -1))
        elif isinstance(record, dict) and record.get("event") == "step":
            step = max(step, record.get("step", -1))
    return step, epoch


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


class CSVLogger(Callback):
    """Keras' CSVLogger: rank 0 writes one row per epoch (``epoch`` then the sorted log keys)."""

    def __init__(self, filename: str | Path, separator: str = ",", append: bool = False) -> None:
        self.filename, self.separator, self.append = Path(filename), separator, append
        self._file: TextIO | None = None
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.is_root:
            self.filename.parent.mkdir(parents=True, exist_ok=True)
            fresh = not (self.append and self.filename.exists() and self.filename.stat().st_size)
            self._file = self.filename.open("a" if self.append else "w", newline="")
            self._keys = None if fresh else []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._file is None:
            return
        logs = metric_logs(logs)
        if not self._keys:
            header = self._keys is None
            self._keys = sorted(logs)
            if header:
                self._file.write(self.separator.join(["epoch", *self._keys]) + "\n")
        row = [str(epoch)] + [repr(logs[k]) if k in logs else "NA" for k in self._keys]
        self._file.write(self.separator.join(row) + "\n")
        self._file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoard(Callback):
    """Keras' TensorBoard callback: rank 0 writes event files through tensorboardX.

    Epoch metrics go to ``log_dir/train`` and ``log_dir/validation`` as ``epoch_loss``,
    ``epoch_accuracy`` ... by epoch, as Keras names them. ``update_freq="batch"`` or an integer
    also writes ``batch_loss`` and ``batch_accuracy`` at every logging window (``log_every``),
    by step. Needs the optional extra: ``pip install 'mpinn[tensorboard]'``.
    """

    def __init__(self, log_dir: str | Path = "logs", histogram_freq: int = 0,
                 write_graph: bool = True, update_freq: str | int = "epoch") -> None:
        from mpinn.errors import ConfigError, UnsupportedFeature

        if importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("TensorBoard needs tensorboardX; install it with "
                              "pip install 'mpinn[tensorboard]'")
        if histogram_freq:
            raise UnsupportedFeature("TensorBoard(histogram_freq=...)",
                                     "mpinn's TensorBoard writes scalars (loss, accuracy, lr)")
        if update_freq not in ("epoch", "batch") and not isinstance(update_freq, int):
            raise ConfigError(f"update_freq must be 'epoch', 'batch' or an integer, got {update_freq!r}")
        self.log_dir, self.update_freq = Path(log_dir), update_freq
        self._writers: dict[str, Any] = {}

    def _writer(self, run: str):
        if run not in self._writers:
            from tensorboardX import SummaryWriter

            self._writers[run] = SummaryWriter(str(self.log_dir / run))
        return self._writers[run]

    def on_step_end(self, record: dict[str, Any]) -> None:
        if self.is_root and self.update_freq != "epoch":
            for name in ("loss", "accuracy"):
                self._writer("train").add_scalar(f"batch_{name}", record[name], record["step"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.is_root:
            return
        for key, value in metric_logs(logs).items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(run).add_scalar(f"epoch_{name}", value, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def default_callbacks(comm, verbose: int = 1, metrics_path: str | Path | None = None,
                      verbose_ranks: bool = False) -> list[Callback]:
    """What ``fit`` adds to the user's callbacks: the progress printer (unless ``verbose`` is 0)
    and, with ``metrics_path``, the JSON-lines metrics log."""
    callbacks: list[Callback] = []
    if verbose:
        callbacks.append(ProgressLogger(comm.rank, all_ranks=verbose_ranks, verbose=verbose))
    if metrics_path:
        callbacks.append(MetricsLog(metrics_path, comm.rank))
    return callbacks
