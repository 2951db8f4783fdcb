"""The ``mpinn`` command (also ``python -m mpinn``): train, evaluate, predict, export.

Bad input exits with status 2 and one message printed by rank 0; an unexpected exception on
any rank prints that rank's traceback and aborts the whole job.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mpinn.config import TrainConfig, known_keys, load_toml, make_config
from mpinn.errors import ConfigError, Preempted
from mpinn.plan.commands import PLANNING_COMMANDS, add_planning_commands, run_planning_command
from mpinn.sweep_config import add_sweep_command, sweep_spec

FLAG_HELP = {
    "dataset": "digits (default), synthetic, regression, xor, or a path to an .npz / IDX folder",
    "hidden": "hidden layer sizes, comma-separated (default 64)",
    "activation": "hidden activation: relu, leaky_relu, tanh, sigmoid",
    "optimizer": "sgd, adam, adamw or rmsprop",
    "batch_size": "GLOBAL batch size (split over the ranks)",
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
    "watchdog": "abort the job when one communication call waits longer than this many seconds",
    "deterministic": "bitwise the same result at any rank count (exact sums over fixed sample groups)",
    "group_size": "samples per group in deterministic mode (fixed whatever the rank count; default 128)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise ConfigError(f"{message} (see mpinn {self.prog.split()[-1]} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpinn", description="Neural-network training on CPU clusters with MPI.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train a model (the digits MLP by default)")
    train.add_argument("--config", help="TOML file with any of: " + ", ".join(known_keys()))
    for key in known_keys():
        switch = {"nargs": "?", "const": "true"} if isinstance(getattr(TrainConfig, key), bool) else {}
        train.add_argument("--" + key.replace("_", "-"), dest=key, default=None, **switch,
                           help=FLAG_HELP.get(key, f"default {getattr(TrainConfig, key)!r}"))
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
    add_planning_commands(commands)
    add_sweep_command(commands, FLAG_HELP)
    return parser


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Flags override the TOML file, which overrides the defaults."""
    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k in known_keys() and v is not None})
    return make_config(values)


def set_blas_threads(threads: int) -> None:
    """Pin BLAS threads per rank; effective because numpy is not imported yet."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            config = train_config(args)
            set_blas_threads(config.threads)
            from mpinn.commands import train

            return train(config)
        if args.command == "sweep":
            spec = sweep_spec(args)
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
    except Preempted as exc:
        if _rank() == 0:
            print(f"mpinn: {exc}", file=sys.stderr, flush=True)
        return Preempted.EXIT_CODE
    except Exception as exc:
        from mpinn.parallel import Communicator
        from mpinn.parallel.failures import report_and_abort

        comm = Communicator.world()
        if comm.size == 1:
            raise
        report_and_abort(comm, exc)
        return 1


def _rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank()
