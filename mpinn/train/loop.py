"""The training loop: one code path for one rank or many.

The strategy decides what is exchanged and when; this loop decides the order of the work:
global batches from the sampler, this rank's part of each, forward, backward, one optimizer
step, and sample-weighted metrics reduced across ranks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpinn.data.samplers import global_batches, make_sampler, num_batches
from mpinn.config import DEFAULT_WATCHDOG_SECONDS
from mpinn.data.validate import check_features, check_steps, check_xy, fingerprint
from mpinn.errors import ConfigError, UnsupportedFeature, require_positive_int
from mpinn.faults import inject
from mpinn.nn.losses import CrossEntropyLoss
from mpinn.optim.schedules import Schedule
from mpinn.parallel.agreement import agree
from mpinn.parallel.fault_tolerance import check_on_failure
from mpinn.train.callbacks import Callback, MetricsLog, ProgressLogger, default_callbacks, metric_logs
from mpinn.train.checkpoint import Progress
from mpinn.train.checkpointing import Checkpointing
from mpinn.nn.metrics import summarize
from mpinn.train.monitors import TerminateOnNaN
from mpinn.train.nonfinite import NonFiniteGuard
from mpinn.train.progress import ProgressTicker, counted
from mpinn.train.rank_loss import stop_on_rank_loss
from mpinn.train.recovery import Recovery, kept, put_back

DEFAULT_LOG_EVERY = 10


@dataclass
class History:
    """What ``fit`` returns, shaped like Keras' History."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)

    def record(self, epoch: int, values: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)

    def truncate(self, epochs: int) -> None:
        """Keep the first ``epochs`` records (an epoch's end is redone after a rank died)."""
        del self.epoch[epochs:]
        for values in self.history.values():
            del values[epochs:]


def fit(model, x: np.ndarray, y: np.ndarray, *, epochs: int = 1, batch_size: int = 32,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        validation_split: float = 0.0, shuffle: bool = True, drop_last: bool = False,
        accumulation_steps: int = 1, strategy: Any = None, callbacks: list[Callback] | None = None,
        verbose: int = 1, log_every: int | None = None, checkpoint: Checkpointing | None = None,
        lr_schedule: Schedule | None = None, watchdog: float | None = DEFAULT_WATCHDOG_SECONDS,
        on_nonfinite: str = "stop", on_failure: str = "abort") -> History:
    """Train ``model`` (the trainable model, compiled: see :class:`mpinn.keras.Sequential`) on
    (x, y); ``batch_size`` is the GLOBAL batch.

    Every rank passes the same x and y; each takes its contiguous part of every global
    batch, so the result equals one rank's for the same seed and batch size. ``epochs`` is
    the total: with ``checkpoint`` resuming at epoch e, batch b, training goes on from there.
    ``log_every`` is the metrics-record window (default 10 steps); with ``verbose=1`` a
    progress line comes every ``log_every`` steps if given, else about every 10 s.
    ``lr_schedule`` (built on ``model.optimizer``) is stepped after every epoch or step, as
    it counts, and saved and restored with the optimizer in checkpoints.
    ``callbacks`` are added to the defaults (the progress printer unless ``verbose`` is 0 or
    one is given); a callback that sets ``model.stop_training`` ends training on every rank
    at the same step.
    Every rank checks its arguments, then the ranks agree (one small collective), so bad or
    differing input raises alike everywhere. Under a launcher, a collective stuck for
    ``watchdog`` seconds (None or 0: never) aborts the job with a report of where each rank
    is. A NaN or infinite loss or gradient raises :class:`~mpinn.errors.Diverged` naming the
    step (``on_nonfinite="stop"``), or skips the step (``"skip"``; ten in a row still stop).
    ``on_failure="shrink"`` (an MPI with fault tolerance: Open MPI 5 under ``mpiexec --with-ft
    ulfm``; elsewhere a ConfigError) keeps training on the survivors when a rank dies, losing
    no step (:mod:`mpinn.train.recovery`); ``"abort"`` (the default) ends the job.
    """
    check_on_failure(on_failure)
    strategy = strategy or _default_strategy()
    if on_failure == "shrink":
        strategy.comm.tolerate_failures()
    with strategy.comm.watching(watchdog, _run_dir(checkpoint, callbacks)), \
            stop_on_rank_loss(strategy, checkpoint):
        settings = {"epochs": epochs, "batch_size": batch_size, "drop_last": drop_last,
                    "accumulation_steps": accumulation_steps, "shuffle": shuffle}
        x, y, validation_data = agree(strategy.comm, lambda: _checked_inputs(
            model, x, y, validation_data, validation_split, settings, strategy), "arguments to fit")
        _attach_schedule(model, lr_schedule)
        guard = NonFiniteGuard(on_nonfinite, strategy, keras_stop=any(
            isinstance(c, TerminateOnNaN) for c in callbacks or []))
        strategy.setup(model)
        return _train(model, x, y, epochs, batch_size, validation_data, shuffle, drop_last,
                      accumulation_steps, strategy, callbacks, verbose, log_every, checkpoint,
                      lr_schedule, guard, on_failure)


def _train(model, x, y, epochs, batch_size, validation_data, shuffle, drop_last, accumulation_steps,
           strategy, callbacks, verbose, log_every, checkpoint, lr_schedule, guard,
           on_failure) -> History:
    run = _Run(model, x, y, strategy, batch_size, validation_data, drop_last, accumulation_steps,
               checkpoint, lr_schedule, guard)
    sampler = make_sampler("random" if shuffle else "contiguous", len(x), model.seed)
    run.epoch_order = sampler.epoch_order
    if checkpoint:  # the checkpoints record the run's total, so a resume can name a change of it
        checkpoint.run_config = {"epochs": epochs, **checkpoint.run_config}
    replicated = on_failure == "shrink" and strategy.shrinkable  # tallies that outlive a rank
    progress = run.progress = (checkpoint.start(model, strategy, replicated) if checkpoint
                               else Progress(replicated=replicated))
    run.epochs = checkpoint.total_epochs(epochs) if checkpoint else epochs
    window_steps = log_every or DEFAULT_LOG_EVERY
    run.window = _Window(strategy, window_steps, progress, guard)
    steps = num_batches(len(x), batch_size, drop_last)
    if lr_schedule is not None:
        lr_schedule.span(run.epochs * (steps if lr_schedule.per == "step" else 1))
    run.ticker = (ProgressTicker(strategy, run.epochs * steps, progress.step, log_every, replicated)
                  if verbose == 1 else None)
    run.callbacks = _prepared_callbacks(callbacks, model, strategy, verbose,
                                        {"epochs": run.epochs, "steps": steps, "verbose": verbose,
                                         "start_step": progress.step, "start_epoch": progress.epoch})
    recovery = Recovery(model, strategy, run.mark, run.restore, run.on_ranks_lost) if replicated else None
    model.stop_training = False
    for callback in run.callbacks:
        callback.on_train_begin({})
    try:
        while run.going():
            if recovery:
                recovery.run(run.next_unit)
            else:
                run.next_unit()
        for callback in run.callbacks:
            callback.on_train_end({})
    finally:
        if checkpoint:
            checkpoint.stop()
        strategy.update_hook = None
    strategy.finish(model)
    return run.history


class _Run:
    """One fit's training as units: a step, or the end of an epoch (the first unit of an
    epoch also begins it). What a unit changes lives here, so that a redo after a rank's
    death (:mod:`mpinn.train.recovery`) can put back what it started from."""

    def __init__(self, model, x, y, strategy, batch_size, validation_data, drop_last,
                 accumulation_steps, checkpoint, lr_schedule, guard) -> None:
        self.model, self.x, self.y, self.strategy = model, x, y, strategy
        self.batch_size, self.validation_data, self.drop_last = batch_size, validation_data, drop_last
        self.accumulation_steps, self.checkpoint, self.lr_schedule = accumulation_steps, checkpoint, lr_schedule
        self.guard, self.history = guard, History()
        self.epoch_open = self.stopping = False  # within an epoch; its steps are over early
        self.batches: list[np.ndarray] = []

    def going(self) -> bool:
        return self.epoch_open or (self.progress.epoch < self.epochs and not self.model.stop_training)

    def next_unit(self) -> None:
        progress = self.progress
        if not self.epoch_open:
            for callback in self.callbacks:
                callback.on_epoch_begin(progress.epoch, {})
            self.batches = list(global_batches(self.epoch_order(progress.epoch), self.batch_size,
                                               self.drop_last))
            self.epoch_open = True
        if progress.batch < len(self.batches) and not self.stopping:
            self._step(self.batches[progress.batch])
        else:
            self._end_epoch()

    def _step(self, batch: np.ndarray) -> None:
        model, strategy, progress, guard = self.model, self.strategy, self.progress, self.guard
        strategy.comm.note_step(progress.step + 1)
        inject("forward", progress.step + 1)
        guard.before_step(model)
        part = strategy.train_step(model, self.x, self.y, batch, self.accumulation_steps)
        if progress.replicated:  # every rank holds the step's tally over all ranks
            part = strategy.reduce_sum(part)
        progress.batch += 1
        progress.step += 1
        agree_now = strategy.lockstep or progress.step % self.window.log_every == 0 or _saves_now(
            self.checkpoint, progress.step)
        if not guard.after_step(model, part, progress.step, agree_now):
            part = np.zeros(3)
        progress.epoch_tally += part
        _advance_schedule(self.lr_schedule, "step")
        if self.ticker:
            self.ticker.add(part, progress.step, self.callbacks)
        if guard.diverged:  # TerminateOnNaN: stop as Keras does, writing nothing more
            self.stopping = True
        elif self.window.add(part, progress, self.callbacks) and _agreed_stop(model, strategy):
            self.stopping = True
        elif self.checkpoint:
            self.checkpoint.after_step(model, strategy, progress, progress.batch == len(self.batches))

    def _end_epoch(self) -> None:
        model, strategy, progress = self.model, self.strategy, self.progress
        self.guard.settle(model, progress.step)
        _end_epoch(model, strategy, progress, self.validation_data, self.batch_size, self.history,
                   self.callbacks)
        _advance_schedule(self.lr_schedule, "epoch")
        _agreed_stop(model, strategy)
        if self.checkpoint and not self.guard.diverged:
            self.checkpoint.save(model, strategy, progress)
        self.epoch_open = self.stopping = False

    def mark(self) -> dict:
        """The small state a unit starts from (see :mod:`mpinn.train.recovery`)."""
        parts = {"progress": self.progress, "guard": self.guard, "window": self.window}
        if self.ticker:
            parts["ticker"] = self.ticker
        return {"parts": {name: kept(part) for name, part in parts.items()},
                "run": (self.epoch_open, self.stopping, self.batches, len(self.history.epoch),
                        self.model.stop_training)}

    def restore(self, mark: dict) -> None:
        parts = {"progress": self.progress, "guard": self.guard, "window": self.window,
                 "ticker": self.ticker}
        for name, attributes in mark["parts"].items():
            put_back(parts[name], attributes)
        self.epoch_open, self.stopping, self.batches, recorded, self.model.stop_training = mark["run"]
        self.history.truncate(recorded)

    def on_ranks_lost(self, dead: list[int]) -> None:
        """The communicator shrank: its rank 0 (maybe another) now prints and writes."""
        if self.checkpoint:
            self.checkpoint.on_ranks_lost(self.strategy.comm)
        for callback in self.callbacks:
            callback.on_ranks_lost(dead)


def _saves_now(checkpoint: Checkpointing | None, step: int) -> bool:
    return bool(checkpoint and checkpoint.every and step % checkpoint.every == 0)


def _run_dir(checkpoint: Checkpointing | None, callbacks: list[Callback] | None) -> Path | None:
    """The run's folder, for the heartbeat records: the checkpoints' or the metrics log's."""
    if checkpoint is not None:
        return Path(checkpoint.directory)
    logs = [c.path for c in callbacks or [] if isinstance(c, MetricsLog)]
    return logs[0].parent if logs else None


def _attach_schedule(model, schedule: Schedule | None) -> None:
    """The model's optimizer carries the schedule fit steps (so checkpoints save its position)."""
    if schedule is None:
        return
    if schedule.optimizer is not model.optimizer:
        raise ConfigError("lr_schedule is built on another optimizer than model.optimizer; build it "
                          "on model.optimizer (after compile)")
    model.optimizer.schedule = schedule


def _advance_schedule(schedule: Schedule | None, unit: str) -> None:
    if schedule is not None and schedule.per == unit:
        schedule.step()


def _prepared_callbacks(callbacks: list[Callback] | None, model, strategy, verbose: int,
                        params: dict[str, Any]) -> list[Callback]:
    """The user's callbacks plus the defaults (a progress printer only if none was given), each
    told the model, the run's parameters and the strategy, as Keras' CallbackList does."""
    callbacks = list(callbacks or [])
    for callback in callbacks:
        _refuse_batch_hooks(callback)
    if not any(isinstance(c, ProgressLogger) for c in callbacks):
        callbacks = default_callbacks(strategy.comm, verbose) + callbacks
    for callback in callbacks:
        callback.set_model(model)
        callback.set_params(dict(params))
        callback.set_strategy(strategy)
    return callbacks


KERAS_BATCH_HOOKS = tuple(f"on_{phase}batch_{edge}" for phase in ("", "train_", "test_", "predict_")
                          for edge in ("begin", "end"))


def _refuse_batch_hooks(callback: Callback) -> None:
    """A Keras hook mpinn never calls would be silently skipped: name it instead."""
    for hook in KERAS_BATCH_HOOKS:
        if callable(getattr(callback, hook, None)):
            raise UnsupportedFeature(f"{type(callback).__name__}.{hook} (a per-batch Keras hook)",
                                     "mpinn calls on_step_end(record) every log_every steps, with "
                                     "metrics reduced over the ranks, and on_epoch_begin/on_epoch_end")


def _agreed_stop(model, strategy) -> bool:
    """Whether any rank's callbacks asked to stop: one tiny reduction, so all ranks agree."""
    model.stop_training = bool(strategy.reduce_sum([float(bool(model.stop_training))])[0] > 0)
    return model.stop_training


def _end_epoch(model, strategy, progress: Progress, validation_data, batch_size: int,
               history: History, callbacks: list[Callback]) -> None:
    """Reduce and report the epoch's metrics, then move ``progress`` to the next epoch.

    The logs come from rank 0 (one broadcast), so every rank's callbacks see the very same
    numbers and decide alike."""
    tally = counted(progress.epoch_tally, progress.replicated, strategy.comm.is_root)
    values, samples = _epoch_values(model, strategy, tally, validation_data, batch_size)
    logs = strategy.comm.bcast_obj({"step": progress.step, **values, "samples": samples})
    for callback in callbacks:
        callback.on_epoch_end(progress.epoch, logs)
    history.record(progress.epoch, metric_logs(logs))
    progress.epoch, progress.batch, progress.epoch_tally = progress.epoch + 1, 0, np.zeros(3)


class _Window:
    """Logs one record per ``log_every`` steps. The window's tally lives in ``progress`` (a
    checkpoint saves it, so a resumed run completes the window it was in); the wall and
    communication time, and the samples they cover, count from this run's start."""

    def __init__(self, strategy, log_every: int, progress: Progress, guard: NonFiniteGuard) -> None:
        self.strategy, self.log_every, self.guard = strategy, log_every, guard
        self._start_timing(progress)

    def _start_timing(self, progress: Progress) -> None:
        self.start, self.comm_start = time.perf_counter(), self.strategy.comm_seconds
        self.untimed_samples = progress.window_tally[2]

    def add(self, part: np.ndarray, progress: Progress, callbacks: list[Callback]) -> bool:
        """Add a step; at the end of a window, report it to the callbacks and return True."""
        progress.window_tally += part
        if progress.step % self.log_every:
            return False
        record = _step_record(self.strategy, progress, self.untimed_samples, self.start,
                              self.comm_start)
        record.update(self.guard.metrics())
        for callback in callbacks:
            callback.on_step_end(record)
        progress.window_tally, progress.window_first = np.zeros(3), progress.step + 1
        self._start_timing(progress)
        return True


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024, strategy: Any = None,
             watchdog: float | None = DEFAULT_WATCHDOG_SECONDS) -> float | tuple[float, float]:
    """Loss (and accuracy if compiled) over (x, y), every sample counted exactly once across
    ranks; checked and agreed on every rank first, as in :func:`fit`."""
    strategy = strategy or _default_strategy()
    with strategy.comm.watching(watchdog):
        x, y = agree(strategy.comm, lambda: _checked_evaluation(model, x, y, batch_size),
                     "arguments to evaluate")
        tally = strategy.evaluate_tally(model, x, y, batch_size)
        loss, accuracy = summarize(strategy.reduce_sum(tally))
    return (loss, accuracy) if model.metrics else loss


def _checked_evaluation(model, x, y, batch_size):
    _require_compiled(model)
    require_positive_int("batch_size", batch_size)
    x, y = _checked_xy(model, x, y)
    return (x, y), {"x": fingerprint(x), "y": fingerprint(y), "batch_size": batch_size}


def _epoch_values(model, strategy, tally, validation_data,
                  batch_size) -> tuple[dict[str, float], int]:
    """The epoch's reduced loss/accuracy (and validation's), and its training sample count."""
    tallies = [tally]
    if validation_data is not None:
        tallies.append(strategy.evaluate_tally(model, *validation_data, max(batch_size, 1024)))
    reduced = strategy.reduce_sum(np.concatenate(tallies)).reshape(-1, 3)
    values = {}
    for prefix, part in zip(("", "val_"), reduced):
        loss, accuracy = summarize(part)
        values[prefix + "loss"] = loss
        if model.metrics:
            values[prefix + "accuracy"] = accuracy
    return values, int(reduced[0][2])


def _step_record(strategy, progress: Progress, untimed_samples: float, window_start: float,
                 comm_start: float) -> dict[str, float]:
    tally = np.append(progress.window_tally, progress.window_tally[2] - untimed_samples)
    reduced = strategy.reduce_sum(counted(tally, progress.replicated, strategy.comm.is_root))
    seconds = time.perf_counter() - window_start
    comm_seconds = strategy.comm_seconds - comm_start
    loss, accuracy = summarize(reduced[:3])
    return {"step": progress.step, "first_step": progress.window_first, "epoch": progress.epoch,
            "loss": loss, "accuracy": accuracy,
            "samples_per_s": reduced[3] / seconds if seconds > 0 else 0.0,
            "compute_s": seconds - comm_seconds, "comm_s": comm_seconds}


def _default_strategy():
    from mpinn.parallel import default_strategy

    return default_strategy()


def _require_compiled(model) -> None:
    if model.head is None or model.optimizer is None:
        raise ConfigError("the model is not compiled: call model.compile(optimizer=..., loss=...) first")


def _checked_xy(model, x, y, name: str = "x", y_name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (samples, features), got shape {x.shape}")
    if model.net.built:
        check_features(x, model.net.input_dim, name)
    else:
        model.build(x.shape[1])
    sparse = isinstance(model.head.loss, CrossEntropyLoss) and y.ndim == 1
    check_xy(x, y, model.net.output_dim if sparse else None, name, y_name)
    return x, y


def _checked_inputs(model, x, y, validation_data, validation_split, settings: dict[str, Any], strategy):
    """This rank's checks of fit's arguments: the arrays, and the facts about them and the
    settings that must be the same on every rank (see :func:`~mpinn.parallel.agreement.agree`)."""
    _require_compiled(model)
    for name in ("epochs", "batch_size", "accumulation_steps"):
        require_positive_int(name, settings[name])
    batch_size = settings["batch_size"]
    strategy.check_batch(batch_size)
    if not 0.0 <= validation_split < 1.0:
        raise ConfigError(f"validation_split must lie in [0, 1), got {validation_split!r}")
    x, y = _checked_xy(model, x, y)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ConfigError("validation_data must be a pair (x_val, y_val)")
        validation_data = _checked_xy(model, *validation_data, "validation x", "validation y")
    elif validation_split:  # rows of the checked x (none when the split rounds to zero)
        cut = len(x) - int(len(x) * validation_split)
        x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
    if len(x) == 0:
        raise ConfigError("no training samples")
    check_steps(len(x), batch_size, settings["drop_last"])
    facts = {"x": fingerprint(x), "y": fingerprint(y), **settings}
    if validation_data is not None:
        facts["validation"] = [fingerprint(a) for a in validation_data]
    return (x, y, validation_data), facts
