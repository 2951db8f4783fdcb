"""A plan as a table, as JSON, and as a PNG of predicted scaling curves."""

from __future__ import annotations

from pathlib import Path

from mpinn.errors import ConfigError
from mpinn.plan.planner import STRATEGIES, RankPlan, efficiency, overall_best, prediction_dict
from mpinn.plan.predict import Prediction

HEADER = ("ranks", "strategy", "layout", "step ms", "compute ms", "comm ms", "idle ms",
          "efficiency", "MiB/rank")


def require_pyplot():
    """matplotlib's pyplot on a file-only backend, or a ConfigError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'mpinn[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ms(seconds: float, step_s: float) -> str:
    """Milliseconds to 3 significant digits; rounding noise far below the step shows as 0."""
    return f"{seconds * 1e3:.3g}" if seconds > 1e-9 * step_s else "0"


def _row(ranks: int, prediction: Prediction, single_rank_s: float, mark: str) -> list[str]:
    p = prediction
    return [str(ranks), p.strategy + mark, p.layout.describe(), _ms(p.step_s, p.step_s),
            _ms(p.compute_s, p.step_s), _ms(p.comm_s, p.step_s), _ms(p.idle_s, p.step_s),
            f"{efficiency(p, single_rank_s):.0%}", f"{p.memory_bytes / 2**20:.4g}"]


def format_table(plans: list[RankPlan], single_rank_s: float) -> str:
    """Markdown table, one row per rank count and strategy; '*' marks the recommendation."""
    rows = []
    for rank_plan in plans:
        for strategy in STRATEGIES:
            prediction = rank_plan.best.get(strategy)
            if prediction is not None:
                mark = " *" if prediction is rank_plan.recommended else ""
                rows.append(_row(rank_plan.ranks, prediction, single_rank_s, mark))
            elif strategy in rank_plan.unavailable:
                rows.append([str(rank_plan.ranks), strategy, "n/a: " + rank_plan.unavailable[strategy]]
                            + [""] * (len(HEADER) - 3))
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def recommendation_lines(plans: list[RankPlan], single_rank_s: float) -> list[str]:
    """One line per rank count, then the overall pick (more ranks can be slower)."""
    lines, fastest = [], overall_best(plans)
    for rank_plan in plans:
        best = rank_plan.recommended
        if best is None:
            lines.append(f"{rank_plan.ranks} ranks: no layout fits the memory limit")
            continue
        slower = (f" (slower than {fastest.ranks} rank(s))"
                  if fastest and best.step_s > fastest.recommended.step_s and rank_plan.ranks > fastest.ranks
                  else "")
        lines.append(f"{rank_plan.ranks} ranks: {best.strategy} ({best.layout.describe()}), "
                     f"{best.step_s * 1e3:.3g} ms/step, efficiency {efficiency(best, single_rank_s):.0%}"
                     + slower)
    if fastest:
        best = fastest.recommended
        lines.append(f"fastest overall: {fastest.ranks} rank(s), {best.strategy} ({best.layout.describe()})")
    return lines


def plan_json(plans: list[RankPlan], single_rank_s: float, inputs: dict) -> dict:
    fastest = overall_best(plans)
    return {"inputs": inputs, "single_rank_step_s": single_rank_s,
            "fastest_ranks": fastest.ranks if fastest else None, "plans": [
        {"ranks": rp.ranks,
         "strategies": {s: prediction_dict(p, single_rank_s) for s, p in rp.best.items()},
         "unavailable": rp.unavailable,
         "recommended": prediction_dict(rp.recommended, single_rank_s) if rp.recommended else None}
        for rp in plans]}


def write_plot(plans: list[RankPlan], single_rank_s: float, path: str | Path, title: str) -> str:
    """Predicted step time and efficiency against ranks, one curve per strategy; the message
    for the user. Without matplotlib a ConfigError says how to install it."""
    plt = require_pyplot()
    fig, (time_ax, eff_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for strategy in STRATEGIES:
        points = [(rp.ranks, rp.best[strategy]) for rp in plans if strategy in rp.best]
        if not points:
            continue
        ranks = [r for r, _ in points]
        time_ax.plot(ranks, [p.step_s * 1e3 for _, p in points], "o-", label=strategy)
        eff_ax.plot(ranks, [efficiency(p, single_rank_s) for _, p in points], "o-", label=strategy)
    time_ax.set(xscale="log", yscale="log", xlabel="ranks", ylabel="predicted step time (ms)")
    eff_ax.set(xscale="log", xlabel="ranks", ylabel="predicted strong-scaling efficiency", ylim=(0, 1.1))
    for ax in (time_ax, eff_ax):
        ax.set_xticks([rp.ranks for rp in plans], [str(rp.ranks) for rp in plans], rotation=45)
        ax.minorticks_off()
        ax.legend()
    fig.suptitle(f"PREDICTED: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"
