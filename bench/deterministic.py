"""The cost of deterministic mode: step time against the normal mode, side by side.

    .venv/bin/python bench/deterministic.py [--ranks 2] [--rounds 5] [--group-size 128]

Model 784-1024-1024-1024-10 (SGD, float32, one BLAS thread per rank), 512 samples per rank;
normal and deterministic runs alternate in rounds (the machine is shared and noisy) and the
medians are compared. Writes bench/results/deterministic.json.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402
from scaling import launch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--group-size", type=int, default=128)
    args = parser.parse_args()
    common = ["train", "--batch-per-rank", 512, "--steps", args.steps]
    normal, exact = [], []
    for _ in range(args.rounds):
        normal.append(launch(args.ranks, *common)["step_s"])
        exact.append(launch(args.ranks, *common, "--deterministic", "--group-size",
                            args.group_size)["step_s"])
    n, e = statistics.median(normal), statistics.median(exact)
    print(markdown_table(["ranks", "global batch", "group size", "normal step ms",
                          "deterministic step ms", "deterministic / normal"],
                         [[args.ranks, 512 * args.ranks, args.group_size, f"{n * 1e3:.1f}",
                           f"{e * 1e3:.1f}", f"{e / n:.2f}x"]]))
    path = write_json("deterministic", {"ranks": args.ranks, "group_size": args.group_size,
                                        "normal_step_s": normal, "deterministic_step_s": exact,
                                        "ratio": e / n})
    print(f"\nmedians of {args.rounds} alternating rounds; written {path}")


if __name__ == "__main__":
    main()
