"""The ``mpinn`` command (also ``python -m mpinn``): train, evaluate, predict, export.

Bad input exits with status 2 and one message printed by rank 0; an unexpected exception on
any rank prints that rank's traceback and aborts the whole job.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
from typing import Any

from mpinn.config import (ACTIVATIONS, BALANCES, FAILURE_CHOICES, LR_SCHEDULES, OPTIMIZERS,
                          RESUME_CHOICES, SAMPLERS, SCHEDULE_UNITS, SCHEDULES, STRATEGIES, TrainConfig,
                          known_keys, load_toml, make_config)
from mpinn.errors import ConfigError, Diverged, Preempted
from mpinn.flags import NOTICES
from mpinn.launcher import launch_rank
from mpinn.plan.commands import PLANNING_COMMANDS, add_planning_commands, run_planning_command
from mpinn.sweep_config import add_sweep_command, sweep_spec

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
    "strategy": "parallel strategy: data, pipeline, tensor, grid, zero, async or local-sgd",
    "zero_stage": "ZeRO stage: 1 shards optimizer state, 2 (default) also the reduced gradients",
    "staleness": "async: a worker may run this many steps ahead of the slowest (0: synchronous; default 4)",
    "servers": "async: parameter-server ranks, the parameters sharded over them (default 1)",
    "sync_every": "local-sgd: average the replicas every N steps (default 8)",
    "stages": "pipeline stages (default: every rank of the pipeline)",
    "micro_batches": "micro-batches per step and data replica (pipeline)",
    "schedule": "pipeline schedule: 1f1b (default, bounded activations) or gpipe",
    "boundaries": "layer index where each later pipeline stage starts, e.g. 2,4 (default: balanced)",
    "balance": "balance pipeline stages by params (default) or measured time",
    "grid": "data x pipeline x tensor grid, e.g. data=2,pipeline=2 (implies --strategy grid)",
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
    "deterministic": "bitwise the same result at any rank count (exact sums over fixed sample groups)",
    "group_size": "samples per group in deterministic mode (fixed whatever the rank count; default 128)",
}


FLAG_CHOICES = {"strategy": STRATEGIES, "sampler": SAMPLERS, "resume": RESUME_CHOICES,
                "optimizer": OPTIMIZERS, "activation": ACTIVATIONS, "schedule": SCHEDULES,
                "balance": BALANCES, "verbose": (0, 1, 2), "lr_schedule": LR_SCHEDULES,
                "lr_schedule_per": SCHEDULE_UNITS, "on_failure": FAILURE_CHOICES}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _field_type(key: str) -> Any:
    """The Python type of a TrainConfig field (Optional[X] -> X)."""
    kind = {f.name: f.type for f in dataclasses.fields(TrainConfig)}[key]
    args = getattr(kind, "__args__", None)
    return args[0] if args and type(None) in args else kind


def add_train_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One typed flag per TrainConfig key (``--x/--no-x`` for switches), its default shown.

    Every flag defaults to None, so only what the user typed overrides the TOML file."""
    for key in known_keys():
        if key in exclude:
            continue
        kind, default = _field_type(key), getattr(TrainConfig, key)
        options: dict[str, Any] = {"dest": key, "default": None, "choices": FLAG_CHOICES.get(key)}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind in (int, float):
            options["type"] = kind
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = FLAG_HELP.get(key, key.replace("_", " "))
        if shown not in (None, "", False) and "default" not in help_text:
            help_text += f" (default {shown})"
        parser.add_argument("--" + key.replace("_", "-"), help=help_text, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpinn", description="Neural-network training on CPU clusters with MPI.")
    parser.add_argument("--version", action="store_true", help="print the versions of mpinn, numpy "
                        "and mpi4py and the MPI library in use, then exit")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    train = commands.add_parser("train", help="train a model (the digits MLP by default)")
    train.add_argument("--config", help="TOML file with any of: " + ", ".join(known_keys()))
    add_train_flags(train)
    for name in ("evaluate", "predict"):
        sub = commands.add_parser(name, help=f"{name} with a saved model")
        sub.add_argument("--model", required=True, help="model file written by train --save")
        sub.add_argument("--dataset", default="digits", help=FLAG_HELP["dataset"])
    commands.choices["predict"].add_argument("--input", help=".npy of inputs (default: the test split)")
    commands.choices["predict"].add_argument("--output", required=True, help=".npy for the predictions")
    export = commands.add_parser("export", help="write a saved model's weights for PyTorch users")
    export.add_argument("--model", required=True, help="model file written by train --save")
    export.add_argument("--output", required=True,
                        help=".safetensors or .npz; names as torch.nn.Sequential: 0.weight, 0.bias, ...")
    plot = commands.add_parser("plot", help="draw loss, accuracy and samples/s from a metrics log "
                               "(needs mpinn[plot])")
    plot.add_argument("metrics", help="JSON-lines file written by mpinn train --metrics")
    plot.add_argument("-o", "--output", default="curves.png", help="PNG to write (default curves.png)")
    add_planning_commands(commands)
    add_sweep_command(commands, add_train_flags)
    return parser


def unknown_flags_message(parser: argparse.ArgumentParser, command: str | None,
                          extra: list[str]) -> str:
    """'unrecognized arguments' with the closest valid flag for each unknown one."""
    sub = parser._subparsers._group_actions[0].choices.get(command) if command else parser
    valid = [flag for flag in sub._option_string_actions if flag.startswith("--")]
    hints = []
    for word in extra:
        close = difflib.get_close_matches(word.split("=")[0], valid, n=1, cutoff=0.6)
        if word.startswith("-") and close:
            hints.append(f"{word}: did you mean {close[0]}?")
    message = f"unrecognized arguments: {' '.join(extra)}"
    return message + (f" ({'; '.join(hints)})" if hints else "") + f" (see {sub.prog} --help)"


def version_text() -> str:
    import numpy

    from mpinn import __version__
    from mpinn.parallel.comm import mpi_versions

    mpi4py_version, library = mpi_versions()
    return f"mpinn {__version__} (numpy {numpy.__version__}, mpi4py {mpi4py_version}; MPI: {library})"


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Flags override the TOML file, which overrides the defaults."""
    return make_config(given_settings(args))


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave, in the TOML file or as flags (flags win); the config fills
    in the defaults, and a resumed run the checkpoint's."""
    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    values.update(_typed(args))
    return values


def _typed(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the user gave as flags."""
    return {k: v for k, v in vars(args).items() if k in known_keys() and v is not None}


def _named_by_flags(build, args: argparse.Namespace):
    """``build(args)``; an error about a value the user typed as a flag names the flag
    (``--epochs``), not the config key."""
    try:
        return build(args)
    except ConfigError as exc:
        raise ConfigError(as_flags(str(exc), _typed(args))) from None


def as_flags(message: str, keys) -> str:
    """``message`` with each config key in ``keys`` written as its flag."""
    for key in sorted(keys, key=len, reverse=True):
        flag = "--" + key.replace("_", "-")
        message = re.sub(rf"(?<![\w-])'?{key}'?(?![\w-])", flag, message)
    return message


def set_blas_threads(threads: int) -> None:
    """Pin BLAS threads per rank; effective because numpy is not imported yet."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise ConfigError(unknown_flags_message(parser, args.command, extra))
        _print_notices()
        if args.version:
            print(version_text())
            return 0
        if args.command is None:
            raise ConfigError("a command is needed: train, evaluate, predict, export, plot, "
                              "calibrate, plan or sweep (see mpinn --help)")
        if args.command == "plot":
            from mpinn.plot import plot_metrics

            print(f"curves written to {plot_metrics(args.metrics, args.output)}")
            return 0
        if args.command == "train":
            config = _named_by_flags(train_config, args)
            set_blas_threads(config.threads)
            from mpinn.commands import train

            return train(config, frozenset(given_settings(args)))
        if args.command == "sweep":
            spec = _named_by_flags(sweep_spec, args)
            set_blas_threads(spec.base.threads)
            from mpinn.sweep import sweep

            return sweep(spec)
        if args.command in PLANNING_COMMANDS:
            return run_planning_command(args)
        from mpinn import commands

        return getattr(commands, args.command)(args)
    except ConfigError as exc:
        if _rank() == 0:
            print(f"mpinn: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (Preempted, Diverged) as exc:
        if _rank() == 0:
            print(f"mpinn: {exc}", file=sys.stderr, flush=True)
        return exc.EXIT_CODE
    except Exception as exc:
        from mpinn.parallel import Communicator
        from mpinn.parallel.failures import report_and_abort

        comm = Communicator.world()
        if comm.size == 1:
            raise
        report_and_abort(comm, exc)
        return 1


def _print_notices() -> None:
    """Notices about old flag spellings, once, from rank 0 (read before MPI starts)."""
    if NOTICES and launch_rank() in (None, 0):
        for notice in NOTICES:
            print(f"mpinn: notice: {notice}", file=sys.stderr, flush=True)


def _rank() -> int:
    from mpinn.parallel.comm import Communicator

    return Communicator.world().rank
