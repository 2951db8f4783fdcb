"""What ``--on-failure shrink`` costs without a failure, and how fast it recovers from one.

    .venv-openmpi/bin/python bench/shrink.py [--rounds 5] [--trials 5] [--output runs/bench]

Open MPI only, every job under ``mpiexec --with-ft ulfm``; the 784-1024-1024-1024-10 model,
SGD, 512 samples per rank (see bench/shrink_worker.py; native BLAS kernel, one thread per
rank: bench/common.py).

- Overhead: at ``--ranks`` (2) ranks, runs with ``--on-failure abort`` and ``shrink`` alternate
  in ``--rounds`` rounds; each times ``--steps`` steps after ``--warmup``. Target: the median
  of the rounds' ratios at most 1.03.
- Recovery: at 4 ranks, deterministic mode, rank 2 kills itself when step ``--kill-step`` ends,
  in ``--trials`` trials: the time from the kill to the next step the survivors complete
  (detection, shrink, and the redo of the step in flight on 3 ranks; ``step_s_after`` is a
  step's time on the 3 survivors); target: median at most 2 s. Steps lost: the steps of the run minus the optimizer steps at the end (target 0), and
  the final parameters' SHA-256 against the same run without a failure.
Writes shrink.json.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, launch_worker, markdown_table, write_json  # noqa: E402

WORKER = Path(__file__).with_name("shrink_worker.py")
FLAGS = ("--with-ft", "ulfm", "--allow-run-as-root", "--oversubscribe")
OVERHEAD_TARGET, RECOVERY_TARGET = 1.03, 2.0


def launch(ranks: int, *args) -> dict:
    return launch_worker(WORKER, ranks, *args, launcher_flags=FLAGS)


def step_seconds(run: dict, warmup: int) -> float:
    """Mean seconds per step from the end of step ``warmup`` to the last logged step."""
    times = dict(run["times"])
    last = max(times)
    return (times[last] - times[warmup]) / (last - warmup)


def overhead(args) -> dict:
    runs: dict[str, list[float]] = {"abort": [], "shrink": []}
    for _ in range(args.rounds):
        for mode in runs:
            run = launch(args.ranks, "--on-failure", mode, "--steps", args.warmup + args.steps,
                         "--log-every", args.warmup)
            runs[mode].append(step_seconds(run, args.warmup))
    ratios = [s / a for a, s in zip(runs["abort"], runs["shrink"])]
    return {"ranks": args.ranks, "step_s": runs, "ratios": ratios, "ratio": statistics.median(ratios)}


def recovery(args) -> dict:
    steps = args.kill_step + 4
    common = ("--on-failure", "shrink", "--deterministic", "--steps", steps)
    reference = launch(4, *common)
    trials = []
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory() as folder:
            kill_file = Path(folder) / "killed_at"
            run = launch(4, *common, "--kill-step", args.kill_step, "--kill-rank", 2,
                         "--kill-file", kill_file)
            killed_at = float(kill_file.read_text())
        # the steps after the victim's last: rank 0 can end that same step just after the kill
        after = [t for step, t in run["times"] if step > args.kill_step]
        trials.append({"recovery_s": after[0] - killed_at,
                       "step_s_after": statistics.median(b - a for a, b in zip(after, after[1:])),
                       "ranks_at_end": run["ranks_at_end"],
                       "steps_lost": steps - run["optimizer_steps"],
                       "same_sha256": run["sha256"] == reference["sha256"]})
    return {"steps": steps, "kill_step": args.kill_step, "trials": trials,
            "recovery_s": statistics.median(t["recovery_s"] for t in trials),
            "steps_lost": max(t["steps_lost"] for t in trials),
            "same_sha256": all(t["same_sha256"] for t in trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--kill-step", type=int, default=4)
    add_output_argument(parser)
    args = parser.parse_args()
    cost, recovered = overhead(args), recovery(args)
    abort, shrink = (statistics.median(cost["step_s"][mode]) for mode in ("abort", "shrink"))
    print(markdown_table(["ranks", "abort step ms", "shrink step ms", "shrink / abort",
                          f"≤ {OVERHEAD_TARGET}"],
                         [[args.ranks, f"{abort * 1e3:.1f}", f"{shrink * 1e3:.1f}",
                           f"{cost['ratio']:.3f}", "yes" if cost["ratio"] <= OVERHEAD_TARGET else "NO"]]))
    print(f"medians of {args.rounds} alternating rounds of {args.steps} steps (the ratio: median of "
          f"the rounds' ratios)\n")
    print(markdown_table(["ranks", "recovery s (median)", f"≤ {RECOVERY_TARGET} s", "steps lost",
                          "SHA-256 as without failure"],
                         [[f"4 → 3", f"{recovered['recovery_s']:.2f}",
                           "yes" if recovered["recovery_s"] <= RECOVERY_TARGET else "NO",
                           recovered["steps_lost"], "yes" if recovered["same_sha256"] else "NO"]]))
    print(f"{args.trials} trials: rank 2 killed when step {args.kill_step} ends; from the kill to the "
          f"next step the survivors complete (deterministic mode)")
    path = write_json("shrink", {"overhead": cost, "recovery": recovered}, args.output)
    print(f"written {path}")


if __name__ == "__main__":
    main()
