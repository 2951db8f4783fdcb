"""The ``mpinn`` command (also ``python -m mpinn``): one dispatch table, :data:`COMMANDS`.

Each command adds its arguments and runs; what needs numpy or MPI is imported only when a
command runs, after the BLAS threads are pinned. Bad input exits with status 2 and one message
printed by rank 0 (options named as flags); an unexpected exception on any rank prints that
rank's traceback and aborts the whole job.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from mpinn.cli.flags import (FLAG_HELP, Parser, add_train_flags, given_settings, named_by_flags,
                             options_as_flags, set_blas_threads, train_config)
from mpinn.cli.planning import add_calibrate_arguments, add_plan_arguments, run_calibrate, run_plan
from mpinn.cli.sweep_config import add_sweep_arguments, sweep_spec
from mpinn.config import known_keys
from mpinn.errors import ConfigError, Diverged, Preempted, RankLost
from mpinn.launcher import launch_rank
from mpinn.registry import NOTICES


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with any of: " + ", ".join(known_keys()))
    add_train_flags(parser)


def run_train(args: argparse.Namespace) -> int:
    config = named_by_flags(train_config, args)
    _print_notices()  # the config's renamed keys
    set_blas_threads(config.threads)
    from mpinn.cli.commands import train

    return train(config, frozenset(given_settings(args)))


def run_sweep(args: argparse.Namespace) -> int:
    spec = named_by_flags(sweep_spec, args)
    _print_notices()
    set_blas_threads(spec.base.threads)
    from mpinn.cli.sweep import sweep

    return sweep(spec)


def add_saved_model_arguments(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    parser.add_argument("--model", required=True, help="model file written by train --save")
    if dataset:
        parser.add_argument("--dataset", default="digits", help=FLAG_HELP["dataset"])


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    add_saved_model_arguments(parser)
    parser.add_argument("--input", help=".npy of inputs (default: the test split)")
    parser.add_argument("--output", required=True, help=".npy for the predictions")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    add_saved_model_arguments(parser, dataset=False)
    parser.add_argument("--output", required=True,
                        help=".safetensors or .npz; names as torch.nn.Sequential: 0.weight, 0.bias, ...")


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", help="JSON-lines file written by mpinn train --metrics")
    parser.add_argument("-o", "--output", default="curves.png", help="PNG to write (default curves.png)")


def run_plot(args: argparse.Namespace) -> int:
    from mpinn.cli.plot import plot_metrics

    print(f"curves written to {plot_metrics(args.metrics, args.output)}")
    return 0


def run_saved_model_command(args: argparse.Namespace) -> int:
    from mpinn.cli import commands

    return getattr(commands, args.command)(args)


COMMANDS: dict[str, Command] = {
    "train": Command("train a model (the digits MLP by default)", add_train_arguments, run_train),
    "evaluate": Command("evaluate with a saved model", add_saved_model_arguments, run_saved_model_command),
    "predict": Command("predict with a saved model", add_predict_arguments, run_saved_model_command),
    "export": Command("write a saved model's weights for PyTorch users", add_export_arguments,
                      run_saved_model_command),
    "plot": Command("draw loss, accuracy and samples/s from a metrics log (needs mpinn[plot])",
                    add_plot_arguments, run_plot),
    "calibrate": Command("measure this machine into a planner profile (run under mpiexec with the "
                         "ranks per node you will use)", add_calibrate_arguments, run_calibrate),
    "plan": Command("predict step time per strategy and rank count", add_plan_arguments, run_plan),
    "sweep": Command("train a grid of configurations in parallel groups", add_sweep_arguments, run_sweep),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mpinn", description="Neural-network training on CPU clusters with MPI.")
    parser.add_argument("--version", action="store_true", help="print the versions of mpinn, numpy "
                        "and mpi4py and the MPI library in use, then exit")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)
    for name, command in COMMANDS.items():
        command.add_arguments(commands.add_parser(name, help=command.help))
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
            raise ConfigError(f"a command is needed: {', '.join(COMMANDS)} (see mpinn --help)")
        return COMMANDS[args.command].run(args)
    except ConfigError as exc:
        if _rank() == 0:
            print(f"mpinn: error: {options_as_flags(str(exc))}", file=sys.stderr, flush=True)
        return 2
    except (Preempted, Diverged, RankLost) as exc:
        if _rank() == _first_survivor(getattr(exc, "dead_ranks", [])):
            print(f"mpinn: {options_as_flags(str(exc))}", file=sys.stderr, flush=True)
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
    """Notices about old spellings, each once, from rank 0 (read before MPI starts)."""
    if launch_rank() in (None, 0):
        for notice in NOTICES:
            print(f"mpinn: notice: {notice}", file=sys.stderr, flush=True)
    NOTICES.clear()


def _first_survivor(dead_ranks: list[int]) -> int:
    """The lowest rank of the job not among ``dead_ranks`` (a RankLost's): the one that reports."""
    return next(rank for rank in range(len(dead_ranks) + 1) if rank not in dead_ranks)


def _rank() -> int:
    from mpinn.parallel.comm import Communicator

    return Communicator.world().rank
