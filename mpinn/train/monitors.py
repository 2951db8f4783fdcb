"""Callbacks that steer training, with Keras' names, arguments and semantics.

Every rank runs each of them on the same reduced logs, so every rank takes the same decision
at the same epoch; what they keep or put back (best weights, a saved model) goes through the
strategy's whole-model state (:mod:`mpinn.train.state`), so they work under data, ZeRO,
pipeline and tensor parallelism alike. Only rank 0 prints and writes files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpinn.errors import ConfigError, UnsupportedFeature
from mpinn.train.callbacks import Callback, metric_logs
from mpinn.train.state import ModelState

MODES = ("auto", "min", "max")


class MonitorCallback(Callback):
    """Shared by the callbacks that watch one logged quantity (Keras' MonitorCallback)."""

    def __init__(self, monitor: str, mode: str, min_delta: float, baseline: float | None) -> None:
        if mode not in MODES:
            raise ConfigError(f"{type(self).__name__}: mode must be one of {', '.join(MODES)}, "
                              f"got {mode!r}")
        self.monitor, self.mode, self.min_delta, self.baseline = monitor, mode, abs(min_delta), baseline

    @property
    def maximize(self) -> bool:
        """'auto' maximizes accuracies and minimizes everything else (losses), as Keras does."""
        return self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)

    def reset_best(self) -> None:
        self.best = self.baseline if self.baseline is not None else (-math.inf if self.maximize else math.inf)

    def is_improvement(self, current: float, reference: float) -> bool:
        """Better than ``reference`` by more than ``min_delta``."""
        if self.maximize:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def monitored(self, logs: dict[str, Any] | None) -> float:
        """The watched value; a name the logs lack is an error naming the ones they hold."""
        logs = logs or {}
        if self.monitor not in logs:
            known = ", ".join(metric_logs(logs))
            hint = ("; pass validation_data or validation_split to fit"
                    if self.monitor.startswith("val_") else "")
            raise ConfigError(f"{type(self).__name__} monitors {self.monitor!r} but the logs hold "
                              f"{known}{hint}")
        return float(logs[self.monitor])

    def say(self, message: str) -> None:
        if getattr(self, "verbose", 0) and self.is_root:
            print(message, flush=True)


class EarlyStopping(MonitorCallback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; with
    ``restore_best_weights``, end with the weights of the best epoch (the optimizer is kept)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__(monitor, mode, min_delta, None)
        self.patience, self.verbose, self.start_from_epoch = patience, verbose, start_from_epoch
        self.stop_baseline, self.restore_best_weights = baseline, restore_best_weights

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best_weights: ModelState | None = None
        self.has_best = False
        self.reset_best()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = self.monitored(logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and not self.has_best:
            self._keep_best(epoch)
        self.wait += 1
        if self.is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self._keep_best(epoch)
            if self.stop_baseline is None or self.is_improvement(current, self.stop_baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _keep_best(self, epoch: int) -> None:
        self.best_weights, self.best_epoch, self.has_best = self.take_state(), epoch, True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0:
            self.say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.has_best:
            self.say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.restore_state(self.best_weights, weights_only=True)


class ModelCheckpoint(MonitorCallback):
    """Save the whole model at every epoch end, or only when ``monitor`` improved
    (``save_best_only``). ``filepath`` may hold ``{epoch}`` and log keys, as in Keras. The file
    is mpinn's model format (architecture and weights in one .npz whatever the extension;
    ``save_weights_only`` writes the same file), read back by ``mpinn.keras.models.load_model``.
    """

    def __init__(self, filepath: str | Path, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__(monitor, mode, 0, initial_value_threshold)
        if save_freq != "epoch":
            raise UnsupportedFeature(f"ModelCheckpoint(save_freq={save_freq!r})",
                                     "it saves at epoch ends; for checkpoints every N steps use "
                                     "fit(checkpoint=Checkpointing(directory, every=N))")
        self.filepath, self.verbose = str(filepath), verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.reset_best()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        try:
            path = Path(self.filepath.format(epoch=epoch + 1, **logs))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"ModelCheckpoint cannot fill filepath {self.filepath!r} ({exc}); "
                              f"it may use {{epoch}} and {', '.join(logs)}") from None
        if self.save_best_only:
            current = self.monitored(logs)
            if not self.is_improvement(current, self.best):
                self.say(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            self.say(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                     f"{current:.5f}, saving model to {path}")
            self.best = current
        state = self.take_state()
        if self.is_root:
            self.model.save(path, params=state.params)


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs, never below ``min_lr``; then wait ``cooldown`` epochs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta, None)
        if not 0 <= factor < 1.0:
            raise ConfigError(f"ReduceLROnPlateau does not support a factor >= 1.0 (or < 0); "
                              f"got factor={factor}")
        self.factor, self.patience, self.verbose = factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.wait, self.cooldown_counter = 0, 0
        self.reset_best()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(optimizer.lr)
        current = self.monitored(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and optimizer.lr > self.min_lr:
                optimizer.lr = max(optimizer.lr * self.factor, self.min_lr)
                self.say(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {optimizer.lr}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """At each epoch's start set the learning rate to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``), as Keras does; the rate is logged as ``learning_rate``."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        if not callable(schedule):
            raise ConfigError(f"LearningRateScheduler needs a function schedule(epoch, lr), got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(optimizer.lr))
        except TypeError:  # the older one-argument form, schedule(epoch)
            lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ConfigError(f"the schedule returned {lr!r} for epoch {epoch}; it must return a "
                              f"positive float learning rate")
        optimizer.lr = float(lr)
        if self.verbose and self.is_root:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.", flush=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.lr)


class TerminateOnNaN(Callback):
    """Stop training when the loss (reduced over ranks, so alike on all) is NaN or infinite,
    checked at every logging window and epoch end."""

    def on_step_end(self, record: dict[str, Any]) -> None:
        self._check(record["loss"], f"Step {record['step']}")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._check((logs or {}).get("loss", 0.0), f"Epoch {epoch + 1}")

    def _check(self, loss: float, where: str) -> None:
        if not math.isfinite(loss) and not self.model.stop_training:
            if self.is_root:
                print(f"{where}: Invalid loss, terminating training", flush=True)
            self.model.stop_training = True
