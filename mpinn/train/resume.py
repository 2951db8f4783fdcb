"""What a resumed run keeps from its checkpoint and what it may change, decided once.

- The checkpoint restores the optimizer's state (moments, step counts) and the schedule's
  position, and every hyperparameter the run did not give explicitly.
- Hyperparameters given explicitly (to the optimizer, or ``--lr``, ``--momentum``,
  ``--weight-decay``, ``--epochs``) win over the checkpoint's, and one notice lists what
  changed; with a schedule, a given lr is its new base rate.
- A setting that shapes the model, the data and the order it is seen in, or the lr
  schedule, cannot change: the run stops with a ConfigError naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpinn.errors import ConfigError

# run settings that cannot change on resume (errors name them as options; the CLI as flags)
FIXED_SETTINGS = ("hidden", "activation", "dataset", "seed", "batch_size", "sampler", "drop_last",
                  "validation_split", "group_size", "optimizer", "lr_schedule", "lr_schedule_per",
                  "lr_step_size", "lr_factor", "lr_warmup", "lr_min", "lr_patience")
# run settings a resumed run may change when it gives them (the optimizer's come through it)
RUN_HYPERPARAMETERS = ("epochs",)


def check_fixed_settings(saved_run: dict[str, Any], run_config: dict[str, Any], path: Path) -> None:
    """ConfigError naming the first setting of ``FIXED_SETTINGS`` that differs between the
    checkpoint's run and this one (settings either run lacks are not compared)."""
    for name in FIXED_SETTINGS:
        if name in saved_run and name in run_config and _same(saved_run[name]) != _same(run_config[name]):
            raise ConfigError(f"option {name} {_shown(run_config[name])} differs from "
                              f"{_shown(saved_run[name])} in checkpoint {path}: a resumed run keeps its "
                              f"model, data order and lr schedule; give option {name} "
                              f"{_shown(saved_run[name])}, or start afresh in another option checkpoint_dir")


def run_changes(saved_run: dict[str, Any], run_config: dict[str, Any],
                given: frozenset[str]) -> dict[str, tuple[Any, Any]]:
    """The run hyperparameters given for this run that differ from the checkpoint's, as
    {name: (saved, given)}."""
    return {name: (saved_run[name], run_config[name]) for name in RUN_HYPERPARAMETERS
            if name in given and name in saved_run and name in run_config
            and saved_run[name] != run_config[name]}


def resume_notice(changes: dict[str, tuple[Any, Any]]) -> str | None:
    """The one line a resumed run prints when given settings replace the checkpoint's."""
    if not changes:
        return None
    listed = ", ".join(f"{name} {_shown(saved)} -> {_shown(now)}" for name, (saved, now) in changes.items())
    return f"mpinn: settings given for this run replace the checkpoint's: {listed}"


def _same(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)
