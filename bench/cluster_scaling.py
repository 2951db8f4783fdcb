"""Inter-node scaling on an emulated cluster: 2 nodes in network namespaces, shaped links.

    .venv/bin/python bench/cluster_scaling.py [--rates 0.25,0.5,1,0] [--per-node 1,2]
        [--batch 128] [--model 784,1024,1024,1024,10] [--steps 3] [--rounds 3] [--out runs/bench]
        [--name mpb]

Needs root, ``ip`` and ``tc`` (tests/cluster/cluster.py makes and deletes the namespaces).
For each link rate (Gbit/s; 0 = unshaped, which is host-limited) and each placement (ranks
per node), one run: ``mpinn calibrate`` under that placement writes a profile, ``mpinn.plan``
predicts every 2-node layout from it, and bench/cluster_scaling_worker.py times, in one job:
the compute-only ceiling, raw MPI.Allreduce of the gradient buffer, mpinn data parallel
(bucketed and overlapped; one Allreduce after backward; 1 and 16 MB buckets), ZeRO-2, the
pipeline across the nodes, the planner's best layout of each strategy and, where torch is
installed, PyTorch DDP over gloo; --rounds times, the fastest round of each item counting (the
machine is shared: other load only slows). The bucket items also run on one host (shared
memory).
Writes OUT/cluster_scaling.json and OUT/cluster_scaling.png (efficiency against link rate).
"""

import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "cluster")]
import cluster as emulated  # noqa: E402
from common import has_torch  # noqa: E402

from mpinn.plan.layouts import Layout  # noqa: E402
from mpinn.plan.planner import plan_ranks  # noqa: E402
from mpinn.plan.predict import predict_layout  # noqa: E402
from mpinn.plan.profile import load_profile  # noqa: E402
from mpinn.plan.workload import ModelSpec, parse_widths  # noqa: E402

WORKER = HERE / "cluster_scaling_worker.py"
NAME = "mpb"  # namespaces mpb-hub, mpb-node0, mpb-node1 (--name changes the prefix)
PYTHON, MPIEXEC = sys.executable, str(Path(sys.executable).parent / "mpiexec")
BUCKET_ITEMS = ["data", "data-flat", "data-bucket=1", "data-bucket=16"]
TORCH_PORT = 29533


def bench_env() -> dict:
    """One BLAS thread per rank; the machine's OpenBLAS tuning unset (benchmarks only)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return {**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def grid_item(layout: Layout) -> str:
    if layout.pipeline == layout.tensor == 1 and layout.micro_batches == 1:
        return "zero" if layout.zero else "data"
    return f"grid:{layout.data},{layout.pipeline},{layout.tensor},{layout.micro_batches}"


def run(command: list[str], timeout: int) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=bench_env(),
                          cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[-6:])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def worker_command(items: list[str], args, extra=()) -> list[str]:
    return [PYTHON, str(WORKER), "--items", ";".join(items), "--batch", str(args.batch),
            "--model", args.model, "--steps", str(args.steps), *extra]


def plan_layouts(spec: ModelSpec, args, ranks: int, profile) -> dict:
    """The planner's best layout per strategy, its recommendation, and the fixed layouts."""
    plan = plan_ranks(spec, args.batch, ranks, profile)
    chosen = {strategy: p.layout for strategy, p in plan.best.items()}
    fixed = {"data": Layout(data=ranks), "zero": Layout(data=ranks, zero=True),
             "pipeline across nodes": Layout(pipeline=ranks, micro_batches=args.micro_batches)}
    layouts = {grid_item(lay): lay for lay in [*fixed.values(), *chosen.values()]}
    return {"layouts": layouts, "recommended": grid_item(plan.recommended.layout),
            "best": {s: grid_item(lay) for s, lay in chosen.items()},
            "pipeline": grid_item(fixed["pipeline across nodes"])}


def one_setting(rate: float, per_node: int, spec: ModelSpec, args) -> dict:
    """Calibrate, plan and measure at one link rate and placement."""
    tc_rate = f"{rate}gbit" if rate else None
    cluster = emulated.start(2, tc_rate, args.name)
    ranks, tag = 2 * per_node, f"{rate:g}gbit_x{per_node}" if rate else f"unshaped_x{per_node}"
    profile_path = args.out / f"cluster_profile_{tag}.json"
    run(cluster.mpiexec(MPIEXEC, per_node, [PYTHON, "-m", "mpinn", "calibrate", "--model", args.model,
                                            "--output", str(profile_path)]), 900)
    profile = load_profile(profile_path)
    planned = plan_layouts(spec, args, ranks, profile)
    items = ["compute", "allreduce", *BUCKET_ITEMS, *[i for i in planned["layouts"] if i not in BUCKET_ITEMS]]
    master = f"{cluster.subnet.rsplit('.', 1)[0]}.11:{TORCH_PORT}"  # node0's address
    if has_torch() and not args.no_torch:
        items.append("torch-ddp")
    command = cluster.mpiexec(MPIEXEC, per_node, worker_command(items, args, ["--link-counter",
                                                                            "--torch-master", master]),
                              env={"GLOO_SOCKET_IFNAME": "eth0"})
    measured = fastest_of_rounds([json.loads(run(command, 1800).strip().splitlines()[-1])["results"]
                                  for _ in range(args.rounds)])
    emulated.stop(args.name)
    predicted = {item: predict_layout(spec, args.batch, lay, profile).step_s
                 for item, lay in planned["layouts"].items()}
    print(f"{tag}: " + ", ".join(f"{k} {v['step_s'] * 1e3:.0f} ms" for k, v in measured.items()), flush=True)
    return {"rate_gbit": rate, "ranks_per_node": per_node, "ranks": ranks, "profile": profile_path.name,
            "measured": measured, "predicted": predicted, "planned": {k: v for k, v in planned.items()
                                                                      if k != "layouts"},
            "layouts": {item: lay.describe() for item, lay in planned["layouts"].items()}}


def fastest_of_rounds(rounds: list[dict]) -> dict:
    """Per item, the round with the shortest step: other people's load only ever slows one."""
    return {item: min((r[item] for r in rounds), key=lambda result: result["step_s"]) for item in rounds[0]}


def shared_memory(args) -> list[dict]:
    """The bucket items on one host (shared memory), at 2 and 4 ranks."""
    rows = []
    for ranks in sorted({2 * p for p in args.per_node}):
        command = [MPIEXEC, "-n", str(ranks), *worker_command(["compute", *BUCKET_ITEMS], args)]
        rounds = [json.loads(run(command, 900).strip().splitlines()[-1])["results"] for _ in range(args.rounds)]
        rows.append({"ranks": ranks, "measured": fastest_of_rounds(rounds)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.25,0.5,1,0", help="Gbit/s per link; 0 = unshaped")
    parser.add_argument("--per-node", default="1,2", help="placements: ranks per node")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--model", default="784,1024,1024,1024,10")
    parser.add_argument("--micro-batches", type=int, default=4, help="for the pipeline across nodes")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every item; the fastest counts")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch DDP even if installed")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--name", default=NAME, help="prefix of the namespaces made (NAME-hub, NAME-node0, ...)")
    args = parser.parse_args()
    reason = emulated.why_unavailable()
    if reason:
        sys.exit(f"cluster_scaling: {reason}")
    args.per_node = [int(p) for p in args.per_node.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    atexit.register(emulated.stop, args.name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # atexit deletes the namespaces
    spec = ModelSpec(parse_widths(args.model))
    settings = [one_setting(float(rate), per_node, spec, args)
                for per_node in args.per_node for rate in args.rates.split(",")]
    payload = {"model": args.model, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
               "micro_batches": args.micro_batches, "cpus": os.cpu_count(),
               "settings": settings, "shared_memory": shared_memory(args)}
    path = args.out / "cluster_scaling.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    import cluster_report

    print(cluster_report.tables(payload, args.out))
    print(cluster_report.plot(payload, args.out / "cluster_scaling.png"))
    print(f"written {path}")


if __name__ == "__main__":
    main()
