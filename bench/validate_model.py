"""Predicted vs measured step time of every strategy importable here, at 1, 2 and 4 ranks.

    .venv/bin/python bench/validate_model.py [--ranks 1,2,4] [--batch 512] [--steps 8] [--output runs/bench]

For each rank count P, in each of --rounds rounds: ``mpiexec -n P mpinn calibrate`` writes
OUTPUT/profile_nP_roundR.json (calibrated under the same placement as the runs, so a
machine with fewer cores than P is measured oversubscribed, as it runs), mpinn.plan predicts
each layout from it, and bench/validate_worker.py times the real strategy of that layout
(median of --steps steps). On a shared machine other people's load only ever slows a
calibration or a run, so both sides take the fastest of the rounds. Strategies whose code is
not in the tree are skipped and listed. Writes OUTPUT/validate_model.json.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, bench_env, markdown_table, output_folder, write_json  # noqa: E402

from mpinn.plan.layouts import Layout  # noqa: E402
from mpinn.plan.predict import predict_layout  # noqa: E402
from mpinn.plan.profile import load_profile  # noqa: E402
from mpinn.plan.workload import ModelSpec, parse_widths  # noqa: E402

WORKER = Path(__file__).resolve().parent / "validate_worker.py"
STRATEGY_MODULES = {"zero": "mpinn.parallel.zero", "pipeline": "mpinn.parallel.model_parallel",
                    "tensor": "mpinn.parallel.model_parallel", "grid": "mpinn.parallel.model_parallel"}


def mpiexec(ranks: int, *args) -> str:
    command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *map(str, args)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=bench_env())
    if run.returncode:
        raise RuntimeError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed")
    return run.stdout


def layouts_for(ranks: int, micro_batches: int) -> list[Layout]:
    if ranks == 1:
        return [Layout()]
    layouts = [Layout(data=ranks), Layout(data=ranks, zero=True),
               Layout(pipeline=ranks, micro_batches=micro_batches), Layout(tensor=ranks)]
    if ranks == 4:
        layouts += [Layout(data=2, pipeline=2, micro_batches=micro_batches), Layout(data=2, tensor=2),
                    Layout(pipeline=2, tensor=2, micro_batches=micro_batches)]
    return layouts


def importable(strategy: str) -> bool:
    module = STRATEGY_MODULES.get(strategy)
    return module is None or importlib.util.find_spec(module) is not None


def measure(layout: Layout, args) -> float:
    flags = ["--data", layout.data, "--pipeline", layout.pipeline, "--tensor", layout.tensor,
             "--micro-batches", layout.micro_batches, "--batch", args.batch, "--model", args.model,
             "--steps", args.steps] + (["--zero"] if layout.zero else [])
    out = mpiexec(layout.ranks, sys.executable, WORKER, *flags)
    return json.loads(out.strip().splitlines()[-1])["step_s"]


def wait_for_quiet(limit: float, patience_s: float) -> None:
    """On a shared machine, wait (up to ``patience_s``) for the 1-minute load average to fall
    below ``limit``: other people's work steals the cores from calibration and runs unevenly."""
    deadline = time.monotonic() + patience_s
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)


def one_round(ranks: int, layouts: list[Layout], spec: ModelSpec, args, round_: int) -> dict:
    """Calibrate, then predict and measure every layout once: {layout: (predicted, measured)}."""
    wait_for_quiet(args.quiet_load, args.patience)
    profile_path = output_folder(args.output) / f"profile_n{ranks}_round{round_}.json"
    mpiexec(ranks, sys.executable, "-m", "mpinn", "calibrate", "--model", args.model,
            "--output", profile_path)
    profile = load_profile(profile_path)
    pairs = {}
    for layout in layouts:
        predicted = predict_layout(spec, args.batch, layout, profile).step_s
        try:
            pairs[layout] = (predicted, measure(layout, args))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            pairs[layout] = (predicted, str(exc))
    print(f"{ranks} rank(s), round {round_ + 1}: load average {os.getloadavg()[0]:.1f}", flush=True)
    return pairs


def validate_ranks(ranks: int, spec: ModelSpec, args) -> tuple[list[dict], set[str]]:
    """Rows of predicted vs measured, each the fastest over ``args.rounds`` rounds."""
    layouts = [lay for lay in layouts_for(ranks, args.micro_batches) if importable(lay.strategy)]
    skipped = {lay.strategy for lay in layouts_for(ranks, args.micro_batches)} - {lay.strategy for lay in layouts}
    rounds = [one_round(ranks, layouts, spec, args, r) for r in range(args.rounds)]
    rows = []
    for layout in layouts:
        row = {"ranks": ranks, "strategy": layout.strategy, "layout": layout.describe(),
               "predicted_s": min(r[layout][0] for r in rounds)}
        measured = [r[layout][1] for r in rounds if isinstance(r[layout][1], float)]
        if not measured:
            rows.append({**row, "measured_s": None, "error": rounds[-1][layout][1]})
            continue
        rows.append({**row, "measured_s": min(measured),
                     "relative_error": row["predicted_s"] / min(measured) - 1,
                     "all_rounds": [[r[layout][0], r[layout][1]] for r in rounds]})
    return rows, skipped


def table(rows: list[dict]) -> str:
    body = []
    for r in rows:
        if r["measured_s"] is None:
            body.append([r["ranks"], r["strategy"], r["layout"], f"{r['predicted_s'] * 1e3:.1f}",
                         "failed: " + r["error"], "", ""])
            continue
        error = r["relative_error"]
        body.append([r["ranks"], r["strategy"], r["layout"], f"{r['predicted_s'] * 1e3:.1f}",
                     f"{r['measured_s'] * 1e3:.1f}", f"{error:+.0%}", "yes" if abs(error) <= 0.2 else "NO"])
    return markdown_table(["ranks", "strategy", "layout", "predicted ms", "measured ms",
                           "error", "within 20%"], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_ranks = "1,2,4" + (",8,16" if (os.cpu_count() or 1) >= 16 else "")
    parser.add_argument("--ranks", default=default_ranks)
    parser.add_argument("--batch", type=int, default=512, help="global batch")
    parser.add_argument("--model", default="784,1024,1024,1024,10")
    parser.add_argument("--micro-batches", type=int, default=4, help="for pipeline layouts")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of calibrate + one run per layout; the fastest of each counts")
    parser.add_argument("--quiet-load", type=float, default=1.0,
                        help="wait for the load average to fall below this before each rank count")
    parser.add_argument("--patience", type=float, default=300, help="seconds to wait for that at most")
    add_output_argument(parser)
    args = parser.parse_args()
    spec = ModelSpec(parse_widths(args.model))
    rows, skipped = [], set()
    for ranks in (int(r) for r in args.ranks.split(",")):
        more, missing = validate_ranks(ranks, spec, args)
        rows += more
        skipped |= missing
    print(f"\nmodel {args.model}, global batch {args.batch}, SGD, float32, one BLAS thread per rank, "
          f"{os.cpu_count()} cores")
    print(table(rows))
    measured = sorted({r["strategy"] for r in rows if r["measured_s"] is not None})
    print(f"\nstrategies measured: {', '.join(measured)}"
          + (f"; not in this tree (skipped): {', '.join(sorted(skipped))}" if skipped else ""))
    path = write_json("validate_model", {"model": args.model, "batch": args.batch, "rows": rows,
                                         "measured": measured, "skipped": sorted(skipped)}, args.output)
    print(f"written {path}")


if __name__ == "__main__":
    main()
