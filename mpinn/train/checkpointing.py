"""When and how a run saves, restores and stops: the checkpoint policy that ``fit`` follows.

Every method is called on every rank: gathering the state and agreeing to stop are
collective, only rank 0 reads and writes files, and what it read reaches the other ranks by
broadcast, so a bad checkpoint is reported on every rank alike.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpinn.errors import ConfigError, Preempted, require_positive
from mpinn.train.checkpoint import (Checkpoint, Progress, check_same_model, latest_valid,
                                    list_checkpoints, prune, write_checkpoint)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@dataclass
class Checkpointing:
    """Save to ``directory`` every ``every`` steps (0: only at epoch ends) and at every epoch
    end, keep the ``keep`` newest, resume from the newest valid one if ``resume``, and on a
    preemption signal save and raise :class:`~mpinn.errors.Preempted` on every rank."""

    directory: str | Path
    every: int = 0
    keep: int = 3
    resume: bool = True
    run_config: dict[str, Any] = field(default_factory=dict)
    signals: tuple[int, ...] = PREEMPTION_SIGNALS

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
            raise ConfigError(f"checkpoint every must be an integer >= 0 (steps), got {self.every!r}")
        require_positive("keep_checkpoints", self.keep)
        self._signalled = False
        self._previous_handlers: dict[int, Any] = {}

    def start(self, model, strategy) -> Progress:
        """Restore the newest valid checkpoint if asked, then catch the preemption signals."""
        found = strategy.comm.bcast_obj(self._read_on_root(model) if strategy.comm.is_root else None)
        if isinstance(found, str):
            raise ConfigError(found)
        progress = Progress()
        if found is not None:
            strategy.load_full_state(model, found.params, found.optimizer_state)
            progress = found.progress
            if not strategy.comm.is_root:  # the saved tally is already the sum over ranks
                progress.epoch_tally = np.zeros(3)
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        return progress

    def _read_on_root(self, model) -> Checkpoint | str | None:
        """The checkpoint to resume from, None to start afresh, or what is wrong (a message)."""
        if not self.resume:
            existing = list_checkpoints(self.directory)
            if existing:
                return (f"checkpoint directory {self.directory} already holds {existing[0].name}; "
                        f"continue from it with --resume auto (resume=True), or use an empty "
                        f"directory")
            return None
        checkpoint = latest_valid(self.directory)
        if checkpoint is not None:
            try:
                check_same_model(checkpoint, model.get_config())
            except ConfigError as exc:
                return str(exc)
        return checkpoint

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signalled = True

    def after_step(self, model, strategy, progress: Progress) -> None:
        """Save when due; on a signal seen by any rank, save and raise Preempted everywhere."""
        preempted = strategy.reduce_sum([float(self._signalled)])[0] > 0
        if preempted or (self.every and progress.step % self.every == 0):
            path = self.save(model, strategy, progress)
            if preempted:
                raise Preempted(f"preempted at step {progress.step}; checkpoint {path} written; "
                                f"run again with resume to continue")

    def save(self, model, strategy, progress: Progress) -> Path:
        """Gather the full state and let rank 0 write it; returns the path (on every rank)."""
        state = strategy.full_state(model)
        tally = strategy.reduce_sum(progress.epoch_tally)
        path = None
        if strategy.comm.is_root:
            params, optimizer_state = state
            saved = Progress(progress.epoch, progress.batch, progress.step, tally)
            path = write_checkpoint(self.directory, params, optimizer_state, saved,
                                    model.get_config(), self.run_config)
            prune(self.directory, self.keep)
        return Path(strategy.comm.bcast_obj(str(path) if path else None))

    def stop(self) -> None:
        """Put the previous signal handlers back."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
