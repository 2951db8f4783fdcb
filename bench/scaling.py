"""Strong and weak scaling of data parallelism against the ideal AND the compute-only ceiling,
communication against the bandwidth bound, and PyTorch DDP beside it.

    .venv/bin/python bench/scaling.py [--max-ranks 2] [--steps 10] [--rounds 5] [--output runs/bench]

Launches bench/scaling_worker.py under mpiexec (native BLAS kernel, one thread per rank; see
bench/common.py), model 784-1024-1024-1024-10, SGD, float32. At each rank count P:

- weak (512 samples per rank) and strong (global batch 512) data-parallel steps;
- the compute-only ceiling: P processes doing the same local steps with no communication.
  On one machine P processes share memory bandwidth and clock, so P ranks cannot beat it;
  efficiency is reported against the ideal (one rank's step) and against this ceiling;
- the time a step waits on communication, beside the bandwidth bound of an Allreduce of the
  gradient bytes, 2(P-1)/P x bytes / the measured point-to-point bandwidth.

Each round runs every measurement once, in turn (the machine is shared and noisy); medians of
the rounds are reported. Writes scaling.json and, with matplotlib, scaling.png.
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_output_argument, has_torch, launch_worker, markdown_table,  # noqa: E402
                    output_folder, write_json)

WORKER = Path(__file__).resolve().parent / "scaling_worker.py"
TARGET_OF_CEILING = 0.95


def launch(ranks: int, *args) -> dict:
    return launch_worker(WORKER, ranks, *args)


def one_round(ranks: list[int], args, with_torch: bool) -> dict:
    """Every measurement once: {kind: [result per rank count]} plus the p2p bandwidth."""
    steps = ["--steps", args.steps]
    weak, strong = ["--batch-per-rank", args.batch], ["--global-batch", args.batch]
    kinds = {"weak": ("train", weak), "weak_ceiling": ("ceiling", weak),
             "strong": ("train", strong), "strong_ceiling": ("ceiling", strong)}
    if with_torch:
        kinds["ddp_weak"] = ("torch-ddp", weak)
    result = {kind: [launch(p, mode, *size, *steps) for p in ranks] for kind, (mode, size) in kinds.items()}
    result["p2p"] = launch(2, "p2p", "--steps", 20) if ranks[-1] > 1 else None
    return result


def median_of(rounds: list[dict], kind: str, index: int, key: str = "step_s") -> float:
    return statistics.median(r[kind][index][key] for r in rounds)


def summarize(ranks: list[int], rounds: list[dict]) -> list[dict]:
    """Per rank count: median steps, efficiencies against ideal and ceiling, comm vs bound."""
    bandwidth = statistics.median(r["p2p"]["bytes_per_s"] for r in rounds) if rounds[0]["p2p"] else None
    grad_bytes = rounds[0]["p2p"]["bytes"] if rounds[0]["p2p"] else None
    rows = []
    for i, p in enumerate(ranks):
        row = {"ranks": p}
        for kind in rounds[0]:
            if kind != "p2p":
                row[kind + "_step_s"] = median_of(rounds, kind, i)
        row["weak_comm_s"] = median_of(rounds, "weak", i, "comm_s")
        row["weak_efficiency"] = median_of(rounds, "weak", 0) / row["weak_step_s"]
        row["weak_of_ceiling"] = statistics.median(r["weak_ceiling"][i]["step_s"] / r["weak"][i]["step_s"]
                                                   for r in rounds)
        row["weak_ceiling_efficiency"] = median_of(rounds, "weak", 0) / row["weak_ceiling_step_s"]
        row["strong_efficiency"] = median_of(rounds, "strong", 0) / (p * row["strong_step_s"])
        row["strong_of_ceiling"] = statistics.median(
            r["strong_ceiling"][i]["step_s"] / r["strong"][i]["step_s"] for r in rounds)
        if "ddp_weak" in rounds[0]:
            row["ddp_weak_efficiency"] = median_of(rounds, "ddp_weak", 0) / row["ddp_weak_step_s"]
        row["allreduce_bound_s"] = 2 * (p - 1) / p * grad_bytes / bandwidth if bandwidth else 0.0
        rows.append(row)
    return rows


def print_tables(rows: list[dict], rounds: list[dict], reduce: list[dict]) -> None:
    ddp = "ddp_weak_step_s" in rows[0]
    header = ["ranks", "weak step ms", "ceiling step ms", "weak efficiency (ideal)", "weak / ceiling",
              "strong step ms", "strong efficiency (ideal)", "strong / ceiling"]
    header += ["DDP weak step ms", "DDP weak efficiency"] if ddp else []
    body = []
    for r in rows:
        line = [r["ranks"], f"{r['weak_step_s'] * 1e3:.1f}", f"{r['weak_ceiling_step_s'] * 1e3:.1f}",
                f"{r['weak_efficiency']:.0%}", f"{r['weak_of_ceiling']:.1%}", f"{r['strong_step_s'] * 1e3:.1f}",
                f"{r['strong_efficiency']:.0%}", f"{r['strong_of_ceiling']:.1%}"]
        line += [f"{r['ddp_weak_step_s'] * 1e3:.1f}", f"{r['ddp_weak_efficiency']:.0%}"] if ddp else []
        body.append(line)
    print(markdown_table(header, body))
    if rounds[0]["p2p"]:
        p2p = rounds[0]["p2p"]
        bandwidth = statistics.median(r["p2p"]["bytes_per_s"] for r in rounds)
        print(f"\npoint-to-point bandwidth (rank 0 to 1, {p2p['bytes']:,} bytes): {bandwidth / 1e9:.2f} GB/s")
        raw = {rows[-1]["ranks"]: reduce[-1]["raw_mpi_s"]} if reduce else {}
        print(markdown_table(["ranks", "weak comm wait ms per step", "raw MPI.Allreduce of the gradients ms",
                              "bound 2(P-1)/P x bytes / bandwidth ms"],
                             [[r["ranks"], f"{r['weak_comm_s'] * 1e3:.2f}",
                               f"{raw[r['ranks']] * 1e3:.2f}" if r["ranks"] in raw else "-",
                               f"{r['allreduce_bound_s'] * 1e3:.2f}"] for r in rows if r["ranks"] > 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-ranks", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=512, help="per-rank (weak) / global (strong)")
    add_output_argument(parser)
    args = parser.parse_args()
    ranks = [p for p in (1, 2, 4, 8, 16, 32) if p <= args.max_ranks]
    with_torch = has_torch()
    rounds = [one_round(ranks, args, with_torch) for _ in range(args.rounds)]
    reduce = launch(ranks[-1], "allreduce", "--steps", 20)["allreduce"] if ranks[-1] > 1 else []
    rows = summarize(ranks, rounds)
    print_tables(rows, rounds, reduce)
    at_two = next((r for r in rows if r["ranks"] == 2), None)
    if at_two:
        verdict = "meets" if at_two["weak_of_ceiling"] >= TARGET_OF_CEILING else "misses"
        print(f"\n2 ranks, weak: {at_two['weak_of_ceiling']:.1%} of the compute-only ceiling "
              f"({verdict} the {TARGET_OF_CEILING:.0%} target); medians of {args.rounds} rounds")
    if reduce:
        print()
        print(markdown_table(["bytes", "buckets", "raw MPI.Allreduce ms", "mpinn path ms", "mpinn / raw"],
                             [[r["bytes"], r["buckets"], f"{r['raw_mpi_s'] * 1e3:.3f}",
                               f"{r['mpinn_s'] * 1e3:.3f}", f"{r['mpinn_s'] / r['raw_mpi_s']:.2f}"]
                              for r in reduce]))
    path = write_json("scaling", {"batch": args.batch, "rounds": args.rounds, "summary": rows,
                                  "all_rounds": rounds, "allreduce": reduce}, args.output)
    print(f"\nwritten {path}")
    plot(rows, output_folder(args.output) / "scaling.png")


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install 'mpinn[bench]'): no plot")
        return
    ranks = [r["ranks"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ranks, [r["weak_ceiling_efficiency"] for r in rows], "k:", lw=2,
            label="compute-only ceiling (no communication)")
    ax.plot(ranks, [r["weak_efficiency"] for r in rows], "o-", label="mpinn weak")
    ax.plot(ranks, [r["strong_efficiency"] for r in rows], "s-", label="mpinn strong")
    if "ddp_weak_efficiency" in rows[0]:
        ax.plot(ranks, [r["ddp_weak_efficiency"] for r in rows], "^--", label="PyTorch DDP weak")
    ax.axhline(1.0, color="grey", lw=0.5)
    top = max(1.1, *(max(line.get_ydata()) + 0.05 for line in ax.get_lines()))
    ax.set(xlabel="ranks", ylabel="efficiency against one rank", xticks=ranks, ylim=(0, top),
           title="784-1024-1024-1024-10, data parallel")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"written {path}")


if __name__ == "__main__":
    main()
