"""Predicted vs measured step time of every strategy importable here, at 1, 2 and 4 ranks.

    .venv/bin/python bench/validate_model.py [--ranks 1,2,4] [--batch 512] [--steps 8]

For each rank count P: ``mpiexec -n P mpinn calibrate`` writes bench/results/profile_nP.json
(calibrated under the same placement as the runs, so a machine with fewer cores than P is
measured oversubscribed, as it runs); bench/validate_worker.py times the real strategy of
each layout; mpinn.plan predicts the same layout from that profile. Strategies whose code is
not in the tree are skipped and listed. Writes bench/results/validate_model.json.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_json  # noqa: E402

from mpinn.plan.layouts import Layout  # noqa: E402
from mpinn.plan.predict import predict_layout  # noqa: E402
from mpinn.plan.profile import load_profile  # noqa: E402
from mpinn.plan.workload import ModelSpec, parse_widths  # noqa: E402

WORKER = Path(__file__).resolve().parent / "validate_worker.py"
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
STRATEGY_MODULES = {"zero": "mpinn.parallel.zero", "pipeline": "mpinn.parallel.model_parallel",
                    "tensor": "mpinn.parallel.model_parallel", "grid": "mpinn.parallel.model_parallel"}


def mpiexec(ranks: int, *args) -> str:
    command = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *map(str, args)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)
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


def validate_ranks(ranks: int, spec: ModelSpec, args) -> tuple[list[dict], set[str]]:
    profile_path = RESULTS / f"profile_n{ranks}.json"
    mpiexec(ranks, sys.executable, "-m", "mpinn", "calibrate", "--model", args.model,
            "--output", profile_path)
    profile = load_profile(profile_path)
    rows, skipped = [], set()
    for layout in layouts_for(ranks, args.micro_batches):
        if not importable(layout.strategy):
            skipped.add(layout.strategy)
            continue
        predicted = predict_layout(spec, args.batch, layout, profile).step_s
        try:
            measured = measure(layout, args)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            rows.append({"ranks": ranks, "strategy": layout.strategy, "layout": layout.describe(),
                         "predicted_s": predicted, "measured_s": None, "error": str(exc)})
            continue
        rows.append({"ranks": ranks, "strategy": layout.strategy, "layout": layout.describe(),
                     "predicted_s": predicted, "measured_s": measured,
                     "relative_error": predicted / measured - 1})
        print(f"  {ranks} ranks {layout.describe()}: predicted {predicted * 1e3:.1f} ms, "
              f"measured {measured * 1e3:.1f} ms", flush=True)
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
                                         "measured": measured, "skipped": sorted(skipped)})
    print(f"written {path}")


if __name__ == "__main__":
    main()
