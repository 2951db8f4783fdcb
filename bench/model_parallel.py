"""Pipeline and tensor parallelism measured: bubble, parameter bytes per rank, activation memory
of 1F1B vs GPipe, and step time beside data parallelism on the same model and ranks.

    .venv/bin/python bench/model_parallel.py [--ranks 2] [--steps 8] [--output runs/bench]

Launches bench/model_parallel_worker.py under mpiexec -n RANKS (model: 4 hidden Dense layers
of width 512 with ReLU, 10-way softmax; SGD; float32; global batch 512; one BLAS thread per
rank) and writes model_parallel_n{RANKS}.json. With more ranks than cores the
times are not meaningful; the byte counts and in-flight counts still are.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, launch_worker, markdown_table, write_json  # noqa: E402

WORKER = Path(__file__).resolve().parent / "model_parallel_worker.py"


def launch(ranks: int, steps: int) -> dict:
    return launch_worker(WORKER, ranks, "--steps", steps)


def mb(n: float) -> str:
    return f"{n / 2**20:.2f}"


def tables(result: dict) -> str:
    ranks = result["ranks"]
    params = [[r["strategy"], ranks, mb(r["whole_bytes"]), " / ".join(mb(b) for b in r["per_rank_bytes"]),
               f"{max(r['per_rank_bytes']) / r['whole_bytes']:.3f}"] for r in result["parameter_bytes"]]
    memory = [[r["schedule"], r["micro_batches"], " / ".join(map(str, r["in_flight"])),
               " / ".join(mb(b) for b in r["peak_bytes"])] for r in result["activation_memory"]]
    bubble = [[r["micro_batches"], f"{r['step_s'] * 1e3:.1f}",
               " / ".join(f"{b * 1e3:.1f}" for b in r["compute_s"]), f"{r['measured_bubble']:.3f}",
               f"{r['schedule_bubble']:.3f}", f"{r['formula']:.3f}"] for r in result["bubble"]]
    one_rank = next(r["step_s"] for r in result["step_time"] if r["strategy"] == "one rank")
    steps = [[r["strategy"], f"{r['step_s'] * 1e3:.1f}", f"{one_rank / r['step_s']:.2f}"]
             for r in result["step_time"]]
    return "\n\n".join([
        markdown_table(["strategy", "ranks", "whole model MB", "per rank MB", "largest rank / whole"],
                       params),
        markdown_table(["schedule", "micro-batches", "in flight per stage",
                        f"peak traced MB per stage (batch {result['memory_batch']})"], memory),
        markdown_table(["micro-batches m", "step ms", "compute ms per stage", "measured bubble",
                        "schedule bubble",
                        f"(P-1)/(m+P-1), P={ranks}"], bubble),
        markdown_table([f"strategy ({ranks} ranks)", "step ms", "speed-up over one rank"], steps),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    add_output_argument(parser)
    args = parser.parse_args()
    result = launch(args.ranks, args.steps)
    print(tables(result))
    path = write_json(f"model_parallel_n{args.ranks}", result, args.output)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
