"""The ``mpinn calibrate`` and ``mpinn plan`` commands: arguments and what they do.

Importing this module loads neither numpy nor mpi4py, so the CLI can still pin BLAS
threads before calibrate measures anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from mpinn import registry
from mpinn.errors import ConfigError, require_positive_int
from mpinn.outputs import check_output_file

DEFAULT_MODEL = "784,1024,1024,1024,10"
DEFAULT_HIDDEN = "1024,1024,1024"
# train's optimizer names -> the planner's update-cost classes (state arrays 0, 1 or 2)
PLAN_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "momentum")
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def add_calibrate_arguments(calibrate) -> None:
    calibrate.add_argument("--output", default="profile.json", help="profile JSON to write")
    calibrate.add_argument("--model", default=DEFAULT_MODEL, help="layer widths whose matmuls to time")
    calibrate.add_argument("--quick", action="store_true", help="a few small sizes only (seconds)")
    calibrate.add_argument("--threads", type=int, default=1, help="BLAS threads per rank (default 1)")


def add_plan_arguments(plan) -> None:
    plan.add_argument("--profile", required=True, help="JSON written by mpinn calibrate or by hand")
    plan.add_argument("--hidden", default=DEFAULT_HIDDEN,
                      help=f"hidden layer sizes, comma-separated, as for train (default {DEFAULT_HIDDEN})")
    plan.add_argument("--input-dim", type=int, default=784, help="input features (default 784)")
    plan.add_argument("--num-classes", type=int, default=10, help="outputs (default 10)")
    plan.add_argument("--batch-size", type=int, default=4096, dest="batch",
                      help="GLOBAL batch size, as for train (default 4096)")
    registry.add_old_spelling(plan, "--batch", "--batch-size", dest="batch", type=int)
    registry.add_old_spelling(plan, "--model", "--input-dim, --hidden and --num-classes", dest="model")
    plan.add_argument("--ranks", default="1,2,4,...,64", help="rank counts, e.g. 1,2,4,...,4096")
    plan.add_argument("--strategy", default=",".join(registry.names(planned=True)),
                      help="strategies to consider, comma-separated (default: all it models, "
                           f"{', '.join(registry.names(planned=True))})")
    plan.add_argument("--optimizer", default="sgd", choices=PLAN_OPTIMIZERS,
                      help="as for train: its update cost and state size (default sgd)")
    plan.add_argument("--momentum", type=float, default=0.0,
                      help="SGD momentum, as for train: > 0 keeps one state array (default 0)")
    plan.add_argument("--memory-per-rank", help="recommend only layouts within this, e.g. 2GiB")
    plan.add_argument("--bucket-mb", type=float, default=4.0, help="DataParallel bucket size")
    plan.add_argument("--json", help="also write the plan as JSON here")
    plan.add_argument("--plot", help="write a PNG of predicted scaling curves (needs mpinn[plot])")


def parse_bytes(text: str) -> float:
    """``"2GiB"`` -> 2147483648.0; plain numbers are bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in UNITS:
        raise ConfigError(f"--memory-per-rank must be a size such as 512MiB or 4GB, got {text!r}")
    return float(match.group(1)) * UNITS[match.group(2).upper()]


def run_calibrate(args: argparse.Namespace) -> int:
    from mpinn.plan.workload import ModelSpec, parse_widths

    spec = ModelSpec(parse_widths(args.model))
    require_positive_int("--threads", args.threads)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from mpinn.parallel import Communicator
    from mpinn.parallel.agreement import on_root
    from mpinn.plan.calibrate import QUICK, Sizes, calibrate

    comm = Communicator.world()
    on_root(comm, lambda: check_output_file(args.output, "--output"))
    profile = calibrate(comm, spec, QUICK if args.quick else Sizes())
    if comm.is_root:
        Path(args.output).write_text(json.dumps(profile, indent=2) + "\n")
        print(_calibration_summary(profile, args.output), flush=True)
    return 0


def _calibration_summary(profile: dict, path: str) -> str:
    compute = profile["compute"]
    lines = [f"profile written to {path} ({profile['measured_ranks']} rank(s), "
             f"{profile['ranks_per_node']} per node, {profile['cores_per_node']} cores per node)",
             f"  matmul {compute['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s per core, "
             f"streaming {compute['memory_bytes_per_s'] / 1e9:.1f} GB/s"]
    network = profile["network"]
    if network is None:
        lines.append("  one rank: no network part (run under mpiexec -n 2 or more to measure it)")
        return "\n".join(lines)
    for name in ("intra_node", "inter_node"):
        link = network.get(name)
        if link:
            lines.append(f"  {name}: latency {link['latency_s'] * 1e6:.1f} us, bandwidth "
                         f"{link['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s")
    lines.append(f"  overlap of Iallreduce with compute: {network['overlap']:.0%}")
    return "\n".join(lines)


def cost_class(optimizer: str, momentum: float) -> str:
    """The planner's update-cost class of train's optimizer: its state arrays per parameter."""
    if momentum < 0:
        raise ConfigError(f"--momentum must be >= 0, got {momentum}")
    if optimizer == "sgd":
        return "momentum" if momentum > 0 else "sgd"
    return {"adam": "adam", "adamw": "adam", "rmsprop": "momentum", "momentum": "momentum"}[optimizer]


def run_plan(args: argparse.Namespace) -> int:
    from mpinn.plan import planner, report
    from mpinn.plan.profile import load_profile
    from mpinn.plan.report import require_pyplot
    from mpinn.plan.workload import ModelSpec, parse_widths

    if args.plot:
        require_pyplot()  # before any work: without matplotlib the plot could not be written
    widths = getattr(args, "model", None) or f"{args.input_dim},{args.hidden},{args.num_classes}"
    optimizer = cost_class(args.optimizer, args.momentum)
    spec = ModelSpec(parse_widths(widths), optimizer=optimizer)
    ranks = planner.parse_ranks(args.ranks)
    strategies = tuple(s.strip() for s in args.strategy.split(",") if s.strip())
    limit = parse_bytes(args.memory_per_rank) if args.memory_per_rank else None
    registry.positive_number("--bucket-mb", args.bucket_mb)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_output_file(path, flag)
    profile = load_profile(args.profile)
    plans = planner.plan(spec, args.batch, ranks, profile, limit, args.bucket_mb, strategies)
    single = planner.plan_ranks(spec, args.batch, 1, profile, bucket_mb=args.bucket_mb).best["data"].step_s
    print(f"PREDICTED by the cost model (profile {args.profile}, {profile.source}): model "
          f"{widths.replace(',', '-')}, global batch {args.batch}, optimizer {args.optimizer}")
    print(report.format_table(plans, single))
    print("\nrecommended (fastest that fits" + (f" in {args.memory_per_rank} per rank):" if limit else "):"))
    print("\n".join("  " + line for line in report.recommendation_lines(plans, single)))
    if args.json:
        inputs = {"model": list(spec.widths), "batch": args.batch, "ranks": ranks,
                  "profile": args.profile, "optimizer": args.optimizer, "cost_class": optimizer,
                  "memory_per_rank_bytes": limit, "strategies": list(strategies)}
        Path(args.json).write_text(json.dumps(report.plan_json(plans, single, inputs), indent=2) + "\n")
        print(f"plan written to {args.json}")
    if args.plot:
        print(report.write_plot(plans, single, args.plot, f"{widths.replace(',', '-')}, batch {args.batch}"))
    return 0
