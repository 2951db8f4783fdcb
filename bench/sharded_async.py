"""ZeRO memory per rank vs plain data parallelism; throughput and time-to-accuracy of
synchronous, asynchronous (staleness 1, 4, 16) and local-SGD training with one worker slowed.

    .venv/bin/python bench/sharded_async.py [--delay-ms 5] [--max-ranks 4] [--epochs 10] [--output runs/bench]

Training: digits, 64-64-10, Adam(lr=0.003), global batch 32, with two workers: sync and
local SGD on 2 ranks, async on 3 (rank 0 is the server). The first worker sleeps
``--delay-ms`` before each of its steps (0 and the given delay are both run). Memory:
784-2048-2048-10 (5.8 M parameters, Adam) at 1, 2, 4 ranks. Writes
sharded_async.json and prints markdown tables.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, launch_worker, markdown_table, write_json  # noqa: E402

WORKER = Path(__file__).resolve().parent / "sharded_async_worker.py"
MB = 2**20


def launch(ranks: int, *args) -> dict:
    return launch_worker(WORKER, ranks, *args, timeout=600)


TRAINING = [("sync", "data", 2, []), ("local-sgd k=8", "local-sgd", 2, ["--sync-every", 8]),
            ("async s=1", "async", 3, ["--staleness", 1]), ("async s=4", "async", 3, ["--staleness", 4]),
            ("async s=16", "async", 3, ["--staleness", 16])]  # (label, registry name, ranks, options)


def training_runs(args) -> list[dict]:
    runs = []
    for delay in (0.0, args.delay_ms):
        for label, strategy, ranks, extra in TRAINING:
            result = launch(ranks, "train", "--strategy", strategy, "--delay-ms", delay,
                            "--epochs", args.epochs, *extra)
            runs.append({"label": label, **result})
    return runs


def memory_runs(args) -> list[dict]:
    ranks = [p for p in (1, 2, 4) if p <= args.max_ranks]
    kinds = [("data parallel", ["--strategy", "data"]), ("ZeRO-1", ["--strategy", "zero", "--zero-stage", 1]),
             ("ZeRO-2", ["--strategy", "zero", "--zero-stage", 2])]
    return [{"label": label, **launch(p, "memory", "--batch", 64, *extra)} for p in ranks for label, extra in kinds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--max-ranks", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    add_output_argument(parser)
    args = parser.parse_args()
    memory = memory_runs(args)
    print(markdown_table(
        ["strategy", "ranks", "optimizer state MB/rank", "reduced gradient MB/rank", "max RSS MB/rank", "step ms"],
        [[m["label"], m["ranks"], f"{max(r['optimizer_state'] for r in m['per_rank']) / MB:.1f}",
          f"{max(r['reduced_gradient'] for r in m['per_rank']) / MB:.1f}",
          f"{max(r['max_rss'] for r in m['per_rank']) / MB:.0f}", f"{m['step_s'] * 1e3:.0f}"] for m in memory]))
    training = training_runs(args)
    print()
    print(markdown_table(
        ["strategy", "ranks", "delay ms", "samples/s", "time to 95% s", "final test acc"],
        [[t["label"], t["ranks"], f"{t['delay_ms']:g}", f"{t['samples_per_s']:.0f}",
          "-" if t["time_to_target_s"] is None else f"{t['time_to_target_s']:.2f}",
          f"{t['final_accuracy']:.3f}"] for t in training]))
    path = write_json("sharded_async", {"delay_ms": args.delay_ms, "memory": memory, "training": training},
                      args.output)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
