"""Tables and the efficiency plot of bench/cluster_scaling.py's JSON (also on its own):

    .venv/bin/python bench/cluster_report.py bench/results/cluster_scaling.json [--plot out.png]
        [--predict-again]

``--predict-again`` replaces the stored predictions and recommendations with those of the
planner as it is now, from the same calibration profiles (to check a change of the cost model
against measurements already taken).

Efficiency of a layout = the compute-only ceiling (each rank training its share of the batch
alone, all ranks at once) / the layout's step time. The link bound of a step is the bytes its
busier node sent into its link per step (measured) / the link rate.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table  # noqa: E402

SCALING = [("mpinn data parallel", "data"), ("PyTorch DDP (gloo)", "torch-ddp"), ("ZeRO-2", "zero")]


def rate_label(setting: dict) -> str:
    return f"{setting['rate_gbit']:g} Gbit/s" if setting["rate_gbit"] else "unshaped (host-limited)"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def efficiency(setting: dict, item: str) -> float:
    return setting["measured"]["compute"]["step_s"] / setting["measured"][item]["step_s"]


def _cell(setting: dict, item: str) -> str:
    if item not in setting["measured"]:
        return "-"
    return f"{_ms(setting['measured'][item]['step_s'])} ({efficiency(setting, item):.0%})"


def link_bound_s(setting: dict, item: str) -> float | None:
    sent = setting["measured"][item].get("link_bytes_per_step")
    return sent * 8 / (setting["rate_gbit"] * 1e9) if setting["rate_gbit"] and sent else None


def fastest(setting: dict) -> str:
    layouts = [item for item in setting["layouts"] if item in setting["measured"]]
    return min(layouts, key=lambda item: setting["measured"][item]["step_s"])


def ping_pong_mb_per_s(setting: dict, folder: Path) -> str:
    """The calibration's largest inter-node ping-pong: what one message gets of the link."""
    path = folder / Path(setting["profile"]).name
    if not path.exists():
        return "-"
    largest = json.loads(path.read_text())["network"]["inter_node"]["ping_pong"][-1]
    return f"{largest['bytes'] / largest['seconds'] / 1e6:.0f}"


def scaling_table(settings: list[dict], folder: Path) -> str:
    rows = []
    for s in settings:
        bound = link_bound_s(s, "allreduce")
        pipeline = s["planned"]["pipeline"]
        rows.append([f"2 x {s['ranks_per_node']}", rate_label(s), ping_pong_mb_per_s(s, folder),
                     _ms(s["measured"]["compute"]["step_s"]),
                     _ms(s["measured"]["allreduce"]["step_s"]), _ms(bound) if bound else "-",
                     *[_cell(s, item) for _, item in SCALING],
                     f"{_cell(s, pipeline)} {s['layouts'][pipeline]}",
                     f"{s['layouts'][fastest(s)]}"])
    return markdown_table(["nodes x ranks", "link", "8 MB ping-pong MB/s", "compute-only ms", "MPI.Allreduce ms",
                           "link bound ms", *[f"{name} ms (eff.)" for name, _ in SCALING],
                           "pipeline across nodes ms (eff.)", "fastest measured layout"], rows)


def planner_rows(setting: dict) -> list[list]:
    rows, recommended, best = [], setting["planned"]["recommended"], fastest(setting)
    for item, predicted in setting["predicted"].items():
        measured = setting["measured"][item]["step_s"]
        error = predicted / measured - 1
        mark = (" (recommended)" if item == recommended else "") + (" (fastest)" if item == best else "")
        rows.append([f"2 x {setting['ranks_per_node']}", rate_label(setting), setting["layouts"][item] + mark,
                     _ms(predicted), _ms(measured), f"{error:+.0%}", "yes" if abs(error) <= 0.2 else "NO"])
    return rows


def layout_of(item: str):
    """The Layout a worker item names (the inverse of cluster_scaling.grid_item)."""
    from mpinn.plan.layouts import Layout

    if item in ("data", "zero"):
        return None
    data, pipeline, tensor, micro_batches = map(int, item.split(":", 1)[1].split(","))
    return Layout(data=data, pipeline=pipeline, tensor=tensor, micro_batches=micro_batches)


def predict_again(payload: dict, folder: Path) -> None:
    """Each setting's predictions of its measured layouts and its recommendation, from its
    calibration profile with the current planner (in place)."""
    from cluster_scaling import grid_item
    from mpinn.plan.layouts import Layout
    from mpinn.plan.planner import plan_ranks
    from mpinn.plan.predict import predict_layout
    from mpinn.plan.profile import load_profile
    from mpinn.plan.workload import ModelSpec, parse_widths

    spec = ModelSpec(parse_widths(payload["model"]))
    for s in payload["settings"]:
        profile = load_profile(folder / s["profile"])
        fixed = {"data": Layout(data=s["ranks"]), "zero": Layout(data=s["ranks"], zero=True)}
        s["predicted"] = {item: predict_layout(spec, payload["batch"], fixed.get(item) or layout_of(item),
                                               profile).step_s for item in s["predicted"]}
        recommended = plan_ranks(spec, payload["batch"], s["ranks"], profile).recommended.layout
        s["planned"]["recommended"] = grid_item(recommended)
        s["layouts"].setdefault(grid_item(recommended), recommended.describe())


def planner_summary(settings: list[dict]) -> str:
    lines = []
    for s in settings:
        measured = s["measured"]
        if s["planned"]["recommended"] not in measured:
            lines.append(f"- 2 x {s['ranks_per_node']}, {rate_label(s)}: recommended "
                         f"{s['layouts'][s['planned']['recommended']]}, not measured in this run")
            continue
        chosen = measured[s["planned"]["recommended"]]["step_s"]
        best = measured[fastest(s)]["step_s"]
        verdict = "the fastest" if chosen == best else f"{chosen / best - 1:+.0%} slower than the fastest"
        lines.append(f"- 2 x {s['ranks_per_node']}, {rate_label(s)}: recommended "
                     f"{s['layouts'][s['planned']['recommended']]} is {verdict} "
                     f"({s['layouts'][fastest(s)]}){'' if chosen <= 1.1 * best else ' MISS'}")
    return "\n".join(lines)


def bucket_table(payload: dict) -> str:
    rows = []
    for s in payload["settings"]:
        rows.append([f"2 x {s['ranks_per_node']}", rate_label(s), *_bucket_cells(s["measured"])])
    for s in payload["shared_memory"]:
        rows.append([f"1 x {s['ranks']}", "shared memory", *_bucket_cells(s["measured"])])
    return markdown_table(["nodes x ranks", "link", "one Allreduce after backward ms",
                           "4 MB buckets, overlapped (default) ms", "1 MB buckets ms", "16 MB buckets ms",
                           "gain of the default"], rows)


def _bucket_cells(measured: dict) -> list[str]:
    flat = measured["data-flat"]["step_s"]
    cells = [_ms(flat)] + [_ms(measured[item]["step_s"]) for item in ("data", "data-bucket=1", "data-bucket=16")]
    return cells + [f"{flat / measured['data']['step_s']:.2f}x"]


def tables(payload: dict, folder: Path) -> str:
    """Every table, for results whose calibration profiles lie in ``folder``."""
    settings = payload["settings"]
    planner = [row for s in settings for row in planner_rows(s)]
    return "\n\n".join([
        f"model {payload['model']}, global batch {payload['batch']}, SGD, float32, "
        f"{payload['cpus']} cores shared by every emulated node",
        scaling_table(settings, folder),
        markdown_table(["nodes x ranks", "link", "layout", "predicted ms", "measured ms", "error",
                        "within 20%"], planner),
        planner_summary(settings), bucket_table(payload)])


def plot(payload: dict, path: Path) -> str:
    try:
        import matplotlib
    except ImportError:
        return "no plot: matplotlib is not installed (pip install -e .[plot])"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placements = sorted({s["ranks_per_node"] for s in payload["settings"]})
    figure, axes = plt.subplots(1, len(placements), figsize=(5.5 * len(placements), 4), squeeze=False)
    for axis, per_node in zip(axes[0], placements):
        shaped = sorted((s for s in payload["settings"] if s["ranks_per_node"] == per_node and s["rate_gbit"]),
                        key=lambda s: s["rate_gbit"])
        rates = [s["rate_gbit"] for s in shaped]
        for label, item in [*SCALING, ("pipeline across nodes", "pipeline")]:
            items = [s["planned"]["pipeline"] if item == "pipeline" else item for s in shaped]
            points = [(s["rate_gbit"], efficiency(s, i)) for s, i in zip(shaped, items) if i in s["measured"]]
            if points:
                axis.plot(*zip(*points), marker="o", label=label)
        bound = [min(1.0, s["measured"]["compute"]["step_s"] / link_bound_s(s, "allreduce")) for s in shaped]
        best = [efficiency(s, fastest(s)) for s in shaped]
        axis.plot(rates, best, linestyle="none", marker="*", markersize=12, color="black",
                  label="fastest measured layout")
        for rate, value, s in zip(rates, best, shaped):
            axis.annotate(s["layouts"][fastest(s)], (rate, value), textcoords="offset points",
                          xytext=(4, 6), fontsize=7)
        axis.plot(rates, bound, linestyle="--", color="gray", label="link bound of one Allreduce")
        axis.set(xscale="log", xticks=rates, xticklabels=[f"{r:g}" for r in rates], ylim=(0, max(1.05, 1.15 * max(best))),
                 xlabel="link rate (Gbit/s)", ylabel="efficiency (compute-only / step)",
                 title=f"2 nodes x {per_node} rank(s)")
        axis.minorticks_off()
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"{payload['model']}, global batch {payload['batch']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return f"plot written to {path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--plot", type=Path, help="also write the efficiency plot here")
    parser.add_argument("--predict-again", action="store_true",
                        help="predict with the current planner from the stored profiles")
    args = parser.parse_args()
    payload = json.loads(args.results.read_text())
    if args.predict_again:
        predict_again(payload, args.results.parent)
    print(tables(payload, args.results.parent))
    if args.plot:
        print(plot(payload, args.plot))


if __name__ == "__main__":
    main()
