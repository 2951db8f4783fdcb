"""The train flags: one typed flag per config key, its help and choices, and the settings given.

A strategy's options bring their own help and choices (see :mod:`mpinn.registry`); the other
keys' help is here. Messages name config keys and options; :func:`as_flags` writes them as the
flags the user typed. Stdlib only, so the CLI pins BLAS threads before numpy loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from typing import Any

from mpinn import registry
from mpinn.config import (ACTIVATIONS, FAILURE_CHOICES, LR_SCHEDULES, OPTIMIZERS, RESUME_CHOICES,
                          SAMPLERS, SCHEDULE_UNITS, TrainConfig, known_keys, load_toml, make_config)
from mpinn.errors import ConfigError

FLAG_HELP = {
    "dataset": "digits (default), synthetic, regression, xor, or a path to an .npz / IDX folder",
    "hidden": "hidden layer sizes, comma-separated (default 64)",
    "activation": "hidden activation: relu, leaky_relu, tanh, sigmoid",
    "optimizer": "sgd, adam, adamw or rmsprop",
    "batch_size": "GLOBAL batch size (split over the ranks)",
    "clip_norm": "clip the gradient by the whole model's norm (Keras' global_clipnorm)",
    "lr_schedule": "learning-rate schedule: step, cosine (to --lr-min over the run), warmup-cosine, "
                   "or plateau (x --lr-factor after --lr-patience epochs without a better val_loss)",
    "lr_schedule_per": "count the schedule per epoch (default) or per step",
    "lr_step_size": "step schedule: multiply the lr by --lr-factor every N epochs/steps (default 10)",
    "lr_factor": "step, plateau: the factor (default 0.1)",
    "lr_patience": "plateau: epochs without a better val_loss before the lr is reduced (default 3)",
    "lr_warmup": "warmup-cosine: epochs/steps of linear warm-up from 0.1 x lr (default 1)",
    "lr_min": "cosine, warmup-cosine: the lr at the end of the run; plateau: the lowest (default 0)",
    "sampler": "random (seeded shuffle per epoch) or contiguous",
    "threads": "BLAS threads per rank (default 1)",
    "metrics": "JSON-lines metrics file written by rank 0",
    "save": "write the trained model (.npz) here",
    "verbose": "0 silent, 1 progress (a bar on a terminal, else a line about every 10 s), 2 one line per epoch",
    "verbose_ranks": "every rank prints its progress, not only rank 0",
    "log_every": "metrics record (and, with verbose 1, a progress line) every N steps (default: records every 10 steps, lines about every 10 s)",
    "validation_split": "last fraction of the training set held out for per-epoch validation (default 0.1; 0: none); the test set is scored once, at the end",
    "checkpoint_dir": "rank 0 writes checkpoints here (atomically; SIGTERM/SIGUSR1 save and exit 75)",
    "checkpoint_every": "also checkpoint every N steps (default 0: at epoch ends only)",
    "keep_checkpoints": "keep the N newest valid checkpoints, in the order written (default 3)",
    "resume": "auto: continue from the newest valid checkpoint in --checkpoint-dir; fresh: move "
              "its checkpoints aside and start over; never (default): refuse a folder holding any",
    "watchdog": "seconds a collective may wait in fit/evaluate before the job aborts with a "
                "report of where every rank is (default 600; 0: off)",
    "on_nonfinite": "stop (default: exit 3 naming the step) or skip steps whose loss or gradient "
                    "is NaN/inf (10 in a row still stop)",
    "on_failure": "when a rank dies: abort (default: the job ends) or shrink (the survivors go on; needs Open MPI 5 launched with mpiexec --with-ft ulfm)",
    "num_classes": "classifier outputs; needed when the labels are not exactly 0..K-1",
}

FLAG_CHOICES = {"sampler": SAMPLERS, "resume": RESUME_CHOICES, "optimizer": OPTIMIZERS,
                "activation": ACTIVATIONS, "verbose": (0, 1, 2), "lr_schedule": LR_SCHEDULES,
                "lr_schedule_per": SCHEDULE_UNITS, "on_failure": FAILURE_CHOICES}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def strategy_help() -> str:
    return "parallel strategy: " + "; ".join(f"{e.name}: {e.help}" for e in registry.entries())


def _field_help(field: dataclasses.Field) -> tuple[str, tuple]:
    """The help and choices of a config key: a strategy option's own, or this module's."""
    if field.name == "strategy":
        return strategy_help(), registry.names()
    return (FLAG_HELP.get(field.name) or field.metadata.get("help") or field.name.replace("_", " "),
            FLAG_CHOICES.get(field.name) or field.metadata.get("choices") or None)


def add_train_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One typed flag per TrainConfig key (``--x/--no-x`` for switches), its default shown,
    and a renamed option's old spelling (with a notice).

    Every flag defaults to None, so only what the user typed overrides the TOML file."""
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        kind, default = _field_type(field), field.default
        help_text, choices = _field_help(field)
        options: dict[str, Any] = {"dest": field.name, "default": None, "choices": choices}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind in (int, float):
            options["type"] = kind
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if shown not in (None, "", False) and "default" not in help_text:
            help_text += f" (default {shown})"
        parser.add_argument(flag(field.name), help=options_as_flags(help_text), **options)
        for old in field.metadata.get("old", ()):
            registry.add_old_spelling(parser, flag(old), flag(field.name), dest=field.name,
                                      **{k: v for k, v in options.items() if k not in ("dest", "default")})


def _field_type(field: dataclasses.Field) -> Any:
    """The Python type of a TrainConfig field (Optional[X] -> X)."""
    args = getattr(field.type, "__args__", None)
    return args[0] if args and type(None) in args else field.type


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave, in the TOML file or as flags (flags win); the config fills
    in the defaults, and a resumed run the checkpoint's."""
    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    values.update(typed(args))
    return values


def typed(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the user gave as flags."""
    return {k: v for k, v in vars(args).items() if k in known_keys() and v is not None}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Flags override the TOML file, which overrides the defaults."""
    return make_config(given_settings(args))


def named_by_flags(build, args: argparse.Namespace):
    """``build(args)``; an error about a value the user typed as a flag names the flag
    (``--epochs``), not the config key."""
    try:
        return build(args)
    except ConfigError as exc:
        raise ConfigError(as_flags(options_as_flags(str(exc)), typed(args))) from None


def as_flags(message: str, keys) -> str:
    """``message`` with each config key in ``keys`` written as its flag."""
    for key in sorted(keys, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-])'?{key}'?(?![\w-])", flag(key), message)
    return message


def options_as_flags(message: str) -> str:
    """``message`` with every ``option NAME`` (how parts name a config key) as its flag."""
    keys = set(known_keys())
    return re.sub(r"\b(?:the )?option ([a-z][a-z0-9_]*)\b",
                  lambda m: flag(m.group(1)) if m.group(1) in keys else m.group(0), message)


def set_blas_threads(threads: int) -> None:
    """Pin BLAS threads per rank; effective because numpy is not imported yet."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
