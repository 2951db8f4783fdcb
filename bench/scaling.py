"""Strong and weak scaling of data parallelism, the allreduce path, and PyTorch DDP beside it.

    .venv/bin/python bench/scaling.py [--max-ranks 2] [--steps 10]

Launches bench/scaling_worker.py under mpiexec at 1..max-ranks ranks, model
784-1024-1024-1024-10 (SGD, float32, one BLAS thread per rank); writes
bench/results/scaling.json and, with matplotlib, bench/results/scaling.png.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, has_torch, launch_worker, markdown_table, write_json  # noqa: E402

WORKER = Path(__file__).resolve().parent / "scaling_worker.py"


def launch(ranks: int, *args) -> dict:
    return launch_worker(WORKER, ranks, *args)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-ranks", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=512, help="per-rank (weak) / global (strong)")
    args = parser.parse_args()
    ranks = [p for p in (1, 2, 4, 8, 16, 32) if p <= args.max_ranks]
    steps = ["--steps", args.steps]
    weak = [launch(p, "train", "--batch-per-rank", args.batch, *steps) for p in ranks]
    strong = [launch(p, "train", "--global-batch", args.batch, *steps) for p in ranks]
    ddp = [launch(p, "torch-ddp", "--batch-per-rank", args.batch, *steps) for p in ranks] if has_torch() else []
    reduce = launch(ranks[-1], "allreduce", "--steps", 20)["allreduce"] if ranks[-1] > 1 else []

    rows = []
    for i, p in enumerate(ranks):
        w, s = weak[i], strong[i]
        row = [p, f"{w['step_s'] * 1e3:.1f}", f"{w['comm_s'] * 1e3:.1f}",
               f"{weak[0]['step_s'] / w['step_s']:.0%}",
               f"{s['step_s'] * 1e3:.1f}", f"{strong[0]['step_s'] / (p * s['step_s']):.0%}"]
        if ddp:
            row += [f"{ddp[i]['step_s'] * 1e3:.1f}", f"{ddp[0]['step_s'] / ddp[i]['step_s']:.0%}"]
        rows.append(row)
    header = ["ranks", "weak step ms", "weak comm ms", "weak efficiency", "strong step ms",
              "strong efficiency"] + (["DDP weak step ms", "DDP weak efficiency"] if ddp else [])
    print(markdown_table(header, rows))
    if reduce:
        print()
        print(markdown_table(["bytes", "buckets", "raw MPI.Allreduce ms", "mpinn path ms", "mpinn / raw"],
                             [[r["bytes"], r["buckets"], f"{r['raw_mpi_s'] * 1e3:.3f}",
                               f"{r['mpinn_s'] * 1e3:.3f}", f"{r['mpinn_s'] / r['raw_mpi_s']:.2f}"]
                              for r in reduce]))
    path = write_json("scaling", {"batch": args.batch, "weak": weak, "strong": strong,
                                  "torch_ddp_weak": ddp, "allreduce": reduce})
    print(f"\nwritten {path}")
    plot(ranks, weak, strong, ddp)


def plot(ranks, weak, strong, ddp) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install 'mpinn[plot]'): no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ranks, [weak[0]["step_s"] / w["step_s"] for w in weak], "o-", label="mpinn weak")
    ax.plot(ranks, [strong[0]["step_s"] / (p * s["step_s"]) for p, s in zip(ranks, strong)],
            "s-", label="mpinn strong")
    if ddp:
        ax.plot(ranks, [ddp[0]["step_s"] / d["step_s"] for d in ddp], "^--", label="PyTorch DDP weak")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set(xlabel="ranks", ylabel="scaling efficiency", xticks=ranks, ylim=(0, 1.1),
           title="784-1024-1024-1024-10, data parallel")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=100)
    print(f"written {RESULTS / 'scaling.png'}")


if __name__ == "__main__":
    main()
