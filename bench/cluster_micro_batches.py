"""What one more pipeline micro-batch costs: compute (thin matmuls) or the link.

    .venv/bin/python bench/cluster_micro_batches.py [--rounds 4] [--link 0.25gbit]

Compute, in one process (no MPI): stage 0 of the cluster benchmark's 2-stage pipeline
(Dense 784->1024, ReLU, Dense 1024->1024, ReLU; 128 rows in 1, 4 and 16 micro-batches, forward
and backward as the pipeline runs it) in situ, against the sum of its matmuls timed alone, with
the same operands every call (warm) and cycling through operand copies as large as the model's
parameters and gradients (cold, as ``mpinn calibrate`` times them). Rounds interleave the
three, the fastest of each counting (the machine's speed drifts).

Link, with ``--link RATE`` (root, ip, tc): a 2-stage pipeline of 16-16-1024-16-10 on 2
emulated nodes x 1 rank, which sends the same activation bytes as the benchmark's model
(128 x 1024 floats each way per step) with almost no compute, at 4, 8 and 16 micro-batches.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "cluster")]
import common  # noqa: E402,F401  (one BLAS thread, the machine's own kernel)

import numpy as np  # noqa: E402

from mpinn.nn import Dense, Sequential  # noqa: E402
from mpinn.plan.measure import time_gemm  # noqa: E402
from mpinn.plan.workload import ModelSpec  # noqa: E402

ROWS, COUNTS = 128, (1, 4, 16)
MODEL = ModelSpec((784, 1024, 1024, 1024, 10))


def stage_zero() -> Sequential:
    stage = Sequential(seed=0)
    stage.add(Dense(1024, input_dim=784, activation="relu"))
    stage.add(Dense(1024, activation="relu"))
    stage.build(784)
    return stage


def stage_matmuls(rows: int) -> list[tuple[int, int, int]]:
    """x @ W of both layers, x.T @ dout of both, dout @ W.T of the second (the first's input
    gradient is not needed)."""
    return [(rows, 784, 1024), (rows, 1024, 1024), (784, rows, 1024), (1024, rows, 1024), (rows, 1024, 1024)]


def compute_rounds(rounds: int) -> dict[int, dict[str, float]]:
    stage, rng = stage_zero(), np.random.default_rng(0)
    x = rng.random((ROWS, 784), dtype=np.float32)
    dout = rng.random((ROWS, 1024), dtype=np.float32)

    def step(m: int) -> float:
        start, rows = time.perf_counter(), ROWS // m
        stage.zero_grad()
        for k in range(m):
            stage.forward(x[k * rows:(k + 1) * rows])
            stage.backward(dout[k * rows:(k + 1) * rows], need_input_grad=False)
        return time.perf_counter() - start

    cold_bytes = 2 * 4 * MODEL.num_params
    best: dict[int, dict[str, float]] = {m: {} for m in COUNTS}
    for _ in range(rounds):
        for m in COUNTS:
            step(m)
            found = {"in situ": min(step(m) for _ in range(3)),
                     "warm": m * sum(time_gemm(*shape, 0.01) for shape in stage_matmuls(ROWS // m)),
                     "cold": m * sum(time_gemm(*shape, 0.01, cold_bytes) for shape in stage_matmuls(ROWS // m))}
            best[m] = {key: min(best[m].get(key, np.inf), value) for key, value in found.items()}
    return best


def link_run(rate: str) -> dict[str, float]:
    import cluster as emulated
    from cluster_scaling import MPIEXEC, PYTHON, WORKER, bench_env

    items = ";".join(f"grid:1,2,1,{m}" for m in (4, 8, 16))
    try:
        cluster = emulated.start(2, rate, "mpm")
        command = cluster.mpiexec(MPIEXEC, 1, [PYTHON, str(WORKER), "--items", items, "--batch", str(ROWS),
                                               "--model", "16,16,1024,16,10", "--steps", "5"])
        done = subprocess.run(command, capture_output=True, text=True, env=bench_env(), timeout=600, check=True)
    finally:
        emulated.stop("mpm")
    results = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    return {item: result["step_s"] for item, result in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--link", help="also time the compute-free pipeline at this rate (tc syntax)")
    args = parser.parse_args()
    for m, times in compute_rounds(args.rounds).items():
        in_situ = times["in situ"]
        print(f"{m:2d} micro-batches of {ROWS // m:3d} rows: stage 0 in situ {in_situ * 1e3:6.2f} ms; its matmuls "
              f"alone: warm {times['warm'] * 1e3:6.2f} ms ({times['warm'] / in_situ:.0%}), "
              f"cold {times['cold'] * 1e3:6.2f} ms ({times['cold'] / in_situ:.0%})")
    if args.link:
        for item, seconds in link_run(args.link).items():
            print(f"{args.link}, 2 nodes x 1 rank, 16-16-1024-16-10, m={item.rsplit(',', 1)[1]}: {seconds * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
