"""The cost of deterministic mode against the normal mode, side by side, and its bitwise
equality across rank counts on the machine's native BLAS kernel.

    .venv/bin/python bench/deterministic.py [--ranks 2] [--rounds 5] [--group-size 128] [--output runs/bench]

Model 784-1024-1024-1024-10 (SGD, float32, native BLAS kernel, one thread per rank; see
bench/common.py), 512 samples per rank. Normal and deterministic runs alternate in rounds
(the machine is shared and noisy) and the medians are compared. Then the equality the
SHA-256 tests check in CI (on the kernel CI forces) is checked here on the native kernel:
``--check-steps`` deterministic steps of the same global batch at 1, 2 and 3 ranks must end
in parameters with the same SHA-256. Writes deterministic.json; exits 1 if they differ.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, markdown_table, write_json  # noqa: E402
from scaling import launch  # noqa: E402

TARGET = 1.15


def timing_rounds(args) -> tuple[list[float], list[float]]:
    common = ["train", "--batch-per-rank", 512, "--steps", args.steps]
    normal, exact = [], []
    for _ in range(args.rounds):
        normal.append(launch(args.ranks, *common)["step_s"])
        exact.append(launch(args.ranks, *common, "--deterministic", "--group-size",
                            args.group_size)["step_s"])
    return normal, exact


def equality_check(args) -> dict:
    """SHA-256 of the parameters after the same deterministic steps at 1, 2 and 3 ranks."""
    batch = 512 * args.ranks
    shas = {p: launch(p, "train", "--global-batch", batch, "--steps", args.check_steps, "--warmup", 0,
                      "--deterministic", "--group-size", args.group_size, "--sha")["sha256"]
            for p in (1, 2, 3)}
    return {"global_batch": batch, "steps": args.check_steps, "sha256": shas,
            "equal": len(set(shas.values())) == 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--check-steps", type=int, default=3, help="steps of the equality check")
    add_output_argument(parser)
    args = parser.parse_args()
    normal, exact = timing_rounds(args)
    ratios = [e / n for n, e in zip(normal, exact)]
    n, e, ratio = statistics.median(normal), statistics.median(exact), statistics.median(ratios)
    print(markdown_table(["ranks", "global batch", "group size", "normal step ms",
                          "deterministic step ms", "deterministic / normal", f"≤ {TARGET}x"],
                         [[args.ranks, 512 * args.ranks, args.group_size, f"{n * 1e3:.1f}",
                           f"{e * 1e3:.1f}", f"{ratio:.3f}x", "yes" if ratio <= TARGET else "NO"]]))
    print(f"medians of {args.rounds} alternating rounds (the ratio: median of the rounds' ratios)")
    check = equality_check(args)
    print(f"\nSHA-256 after {check['steps']} deterministic steps at 1, 2, 3 ranks, native kernel: "
          + ("equal" if check["equal"] else "DIFFERENT: " + ", ".join(f"{p}: {s[:12]}" for p, s in check["sha256"].items())))
    path = write_json("deterministic", {"ranks": args.ranks, "group_size": args.group_size,
                                        "normal_step_s": normal, "deterministic_step_s": exact,
                                        "ratios": ratios, "ratio": ratio, "equality": check}, args.output)
    print(f"written {path}")
    sys.exit(0 if check["equal"] else 1)


if __name__ == "__main__":
    main()
