"""When and how a run saves, restores and stops: the checkpoint policy that ``fit`` follows.

Every method is called on every rank: gathering the state and agreeing to stop are
collective, only rank 0 reads, writes and moves files, and what it found reaches the other
ranks by broadcast, so a bad checkpoint folder is reported on every rank alike. Nothing in
the folder is changed before the run is known to go ahead.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpinn.config import RESUME_CHOICES
from mpinn.errors import ConfigError, Preempted, require_positive_int
from mpinn.faults import inject
from mpinn.train.checkpoint import (Checkpoint, Progress, check_same_model, list_checkpoints,
                                    read_checkpoint, write_checkpoint)
from mpinn.train.checkpoint_folder import (Survey, prune, remove_temporaries, set_aside,
                                           set_aside_damaged, survey)
from mpinn.train.progress import counted
from mpinn.train.resume import check_fixed_settings, resume_notice, run_changes

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@dataclass
class Checkpointing:
    """Save to ``directory`` every ``every`` steps (0: only at epoch ends) and at every epoch
    end, keep the ``keep`` newest valid ones in the order they were written, and on a
    preemption signal save and raise :class:`~mpinn.errors.Preempted` on every rank.

    ``resume``: ``"auto"`` (or True) continues from the newest valid checkpoint, ``"fresh"``
    moves the folder's checkpoints aside and starts over, ``"never"`` (or False) refuses a
    folder that holds checkpoints.

    On resume (see :mod:`mpinn.train.resume`), ``run_config`` settings that shape the model or
    the data order must equal the checkpoint's, and those in ``given`` (the ones the user gave;
    None: all) replace the checkpoint's; the others are the checkpoint's."""

    directory: str | Path
    every: int = 0
    keep: int = 3
    resume: str | bool = "auto"
    run_config: dict[str, Any] = field(default_factory=dict)
    signals: tuple[int, ...] = PREEMPTION_SIGNALS
    given: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
            raise ConfigError(f"checkpoint every must be an integer >= 0 (steps), got {self.every!r}")
        require_positive_int("keep_checkpoints", self.keep)
        if isinstance(self.resume, bool):
            self.resume = "auto" if self.resume else "never"
        if self.resume not in RESUME_CHOICES:
            raise ConfigError(f"unknown resume {self.resume!r}; choose one of: {', '.join(RESUME_CHOICES)}")
        self._signalled = False
        self._previous_handlers: dict[int, Any] = {}
        self._sequence = 1  # of the next write (rank 0)
        self._last: tuple[int, Path | None] = (-1, None)  # step and path of the last write (rank 0)
        self._writer = False  # whether this rank writes (rank 0)
        self.saved_run: dict[str, Any] = {}

    def start(self, model, strategy, replicated: bool = False) -> Progress:
        """Restore the newest valid checkpoint if asked, then catch the preemption signals.
        The saved tallies are sums over ranks: rank 0 keeps them, the others start from zero,
        or with ``replicated`` every rank keeps them (see :func:`~mpinn.train.metrics.counted`)."""
        found = strategy.comm.bcast_obj(self._prepare_on_root(model) if strategy.comm.is_root else None)
        if isinstance(found, str):
            raise ConfigError(found)
        progress = Progress(replicated=replicated)
        if found is not None:
            model.optimizer.load_settings(found.optimizer_state)
            strategy.load_full_state(model, found.params, found.optimizer_state)
            self._settle_run_settings(model, strategy, found)
            progress = found.progress
            progress.replicated = replicated
            if not strategy.comm.is_root and not replicated:  # the saved tallies are sums over ranks
                progress.epoch_tally, progress.window_tally = np.zeros(3), np.zeros(3)
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        return progress

    def _settle_run_settings(self, model, strategy, found: Checkpoint) -> None:
        """Run settings not given take the checkpoint's; rank 0 prints one notice of what the
        given ones (and the optimizer's explicit settings) changed."""
        self.saved_run = found.meta.get("run", {})
        given = frozenset(self.run_config) if self.given is None else self.given
        changes = {**model.optimizer.overridden, **run_changes(self.saved_run, self.run_config, given)}
        if "epochs" not in given and "epochs" in self.saved_run and "epochs" in self.run_config:
            self.run_config = {**self.run_config, "epochs": self.saved_run["epochs"]}
        notice = resume_notice(changes)
        if notice and strategy.comm.is_root:
            print(notice, flush=True)

    def total_epochs(self, epochs: int) -> int:
        """The epochs to train in all: the run's, or the checkpoint's when the run did not give them."""
        return int(self.run_config.get("epochs", epochs))

    def _prepare_on_root(self, model) -> Checkpoint | str | None:
        """The checkpoint to resume from, None to start afresh, or what is wrong (a message,
        the folder untouched). Once the run goes ahead, damaged checkpoints (and with
        ``fresh`` the valid ones) are set aside and leftover temporary files removed."""
        self._writer = True
        found = survey(self.directory)
        checkpoint = None
        if self.resume == "never" and (found.valid or found.damaged):
            return (f"checkpoint directory {self.directory} already holds "
                    f"{list_checkpoints(self.directory)[0].name}; continue from it with option "
                    f"resume auto, start over with option resume fresh (which moves it aside), or use an "
                    f"empty directory")
        if self.resume == "auto" and found.damaged and not found.valid:
            return _none_valid(self.directory, found)
        if self.resume == "auto" and found.valid:
            checkpoint = read_checkpoint(found.valid[0].path)
            try:
                check_fixed_settings(checkpoint.meta.get("run", {}), self.run_config, checkpoint.path)
                check_same_model(checkpoint, model.net.get_config())
            except ConfigError as exc:
                return str(exc)
        self._tidy(found)
        self._sequence = found.next_sequence if checkpoint else 1
        if checkpoint:
            done = checkpoint.progress
            print(f"mpinn: resuming from {checkpoint.path}: step {done.step}, epoch "
                  f"{done.epoch + 1}, {done.batch} batches into it", flush=True)
        return checkpoint

    def _tidy(self, found: Survey) -> None:
        """Set damaged checkpoints aside (and valid ones when starting fresh); drop temporaries."""
        set_aside_damaged(self.directory, found.damaged)
        if self.resume == "fresh":
            previous = set_aside(self.directory, [v.path for v in found.valid], "previous")
            if previous:
                print(f"mpinn: starting afresh; {len(found.valid)} earlier checkpoint(s) moved "
                      f"into {previous}", flush=True)
        for path in remove_temporaries(self.directory):
            print(f"mpinn: removed {path.name}, left by an interrupted checkpoint write", flush=True)

    def on_ranks_lost(self, comm) -> None:
        """Ranks died and the run goes on (``on_failure="shrink"``): if the writer was among
        them, the new rank 0 drops the temporary file of a write the writer died in and
        continues the folder's write order."""
        if comm.is_root and not self._writer:
            self._writer = True
            remove_temporaries(self.directory)
            found = survey(self.directory)
            self._sequence = found.next_sequence
            self._last = (found.valid[0].step, found.valid[0].path) if found.valid else (-1, None)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signalled = True

    def after_step(self, model, strategy, progress: Progress, epoch_done: bool = False) -> None:
        """Save when due (a save due on an epoch's last step is left to the epoch-end save); on
        a signal seen by any rank, save and raise Preempted everywhere."""
        preempted = strategy.reduce_sum([float(self._signalled)])[0] > 0
        due = self.every and progress.step % self.every == 0 and not epoch_done
        if preempted or due:
            path = self.save(model, strategy, progress)
            if preempted:
                raise Preempted(f"preempted at step {progress.step}; checkpoint {path} written; "
                                f"run again with option resume auto to continue")

    def save(self, model, strategy, progress: Progress) -> Path:
        """Gather the full state and let rank 0 write it and prune; returns the path (on every
        rank). A save redone after a rank died, at the step last written, writes nothing."""
        state = strategy.full_state(model)
        tallies = strategy.reduce_sum(counted(np.concatenate([progress.epoch_tally, progress.window_tally]),
                                              progress.replicated, strategy.comm.is_root))
        path = None
        if strategy.comm.is_root and progress.step == self._last[0]:
            path = self._last[1]
        elif strategy.comm.is_root:
            params, optimizer_state = state
            saved = Progress(progress.epoch, progress.batch, progress.step, tallies[:3],
                             tallies[3:], progress.window_first)
            path = write_checkpoint(self.directory, params, optimizer_state, saved,
                                    model.net.get_config(), self.run_config, self._sequence)
            self._sequence, self._last = self._sequence + 1, (progress.step, path)
            prune(self.directory, self.keep, path)
        else:
            inject("checkpoint", progress.step)
        return Path(strategy.comm.bcast_obj(str(path) if path else None))

    def stop(self) -> None:
        """Put the previous signal handlers back."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()


def _none_valid(directory: str | Path, found: Survey) -> str:
    reasons = "; ".join(found.damaged.values())
    return (f"checkpoint directory {directory} holds {len(found.damaged)} checkpoint(s) and none "
            f"is valid ({reasons}); nothing was changed: move them elsewhere, or start over with "
            f"option resume fresh (which moves them into damaged-<time>/)")
