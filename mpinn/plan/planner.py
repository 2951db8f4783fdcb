"""Search the layouts for each rank count and recommend the fastest that fits in memory."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mpinn import registry
from mpinn.errors import ConfigError, require_positive_int
from mpinn.plan.layouts import Layout
from mpinn.plan.predict import DEFAULT_BUCKET_MB, Prediction, predict_layout
from mpinn.plan.profile import Profile
from mpinn.plan.workload import ModelSpec

STRATEGIES = registry.names(planned=True)  # the layouts' names (Layout.strategy)


@dataclass(frozen=True)
class RankPlan:
    """Every strategy's best layout at one rank count, and the recommendation."""

    ranks: int
    best: dict[str, Prediction]          # strategy -> its fastest layout
    unavailable: dict[str, str]          # strategy -> why it cannot run here
    recommended: Prediction | None       # fastest layout within the memory limit


MAX_RANKS = 2**20  # the largest rank count planned
MAX_RANK_COUNTS = 64  # rank counts in one plan


def parse_ranks(text: str) -> list[int]:
    """``"1,2,4,...,64"`` -> [1, 2, 4, 8, 16, 32, 64]; ``...`` continues the progression
    set by the two numbers before it up to the one after it."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    ranks: list[int] = []
    for position, item in enumerate(items):
        if item == "...":
            if len(ranks) < 2 or position + 1 >= len(items):
                raise ConfigError(f"--ranks: '...' needs two numbers before it and one after, got {text!r}")
            continue
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(f"--ranks must list positive integers such as 1,2,4,...,4096; got {item!r}")
        value = int(item)
        if value > MAX_RANKS:
            raise ConfigError(f"--ranks goes up to {MAX_RANKS:,} ranks, got {value:,}")
        if position > 0 and items[position - 1] == "...":
            ranks += _progression(ranks[-2], ranks[-1], value)
        ranks.append(value)
    if not ranks or ranks != sorted(set(ranks)):
        raise ConfigError(f"--ranks must be increasing positive integers, got {text!r}")
    if len(ranks) > MAX_RANK_COUNTS:
        raise ConfigError(f"--ranks lists {len(ranks):,} rank counts; plan at most "
                          f"{MAX_RANK_COUNTS} at a time (a geometric series such as 1,2,4,...,4096)")
    return ranks


def _progression(a: int, b: int, stop: int) -> list[int]:
    """Terms after a, b (geometric if b/a is whole, else arithmetic) strictly below stop."""
    terms, ratio, step = [], b // a if b % a == 0 and b > a else None, b - a
    current = b
    while step > 0:
        current = current * ratio if ratio else current + step
        if current >= stop:
            return terms
        terms.append(current)
        if len(terms) > MAX_RANK_COUNTS:
            raise ConfigError(f"--ranks lists more than {MAX_RANK_COUNTS} rank counts; plan at "
                              f"most {MAX_RANK_COUNTS} at a time (a geometric series such as "
                              f"1,2,4,...,4096)")
    raise ConfigError("--ranks must be increasing around '...'")


def _factorizations(ranks: int) -> list[tuple[int, int, int]]:
    divisors = [d for d in range(1, ranks + 1) if ranks % d == 0]
    return [(d, p, ranks // (d * p)) for d in divisors for p in divisors if (ranks // d) % p == 0]


def _micro_batch_counts(rows: int, stages: int) -> list[int]:
    counts = {2**k for k in range(int(math.log2(rows)) + 1)} | {stages * k for k in (1, 2, 4, 8)}
    return sorted(m for m in counts if m <= rows)


def candidate_layouts(spec: ModelSpec, batch: int, ranks: int) -> list[Layout]:
    """Every data x pipeline x tensor factorisation of ``ranks`` (pipeline with each tried
    micro-batch count), plus ZeRO on the data dimension of pure data parallelism."""
    layouts = [Layout(data=ranks, zero=True)] if ranks > 1 else []
    for data, pipeline, tensor in _factorizations(ranks):
        if pipeline > spec.num_layers or data > batch:
            continue
        rows = math.ceil(batch / data)
        counts = _micro_batch_counts(rows, pipeline) if pipeline > 1 else [1]
        layouts += [Layout(data, pipeline, tensor, micro_batches=m) for m in counts]
    return layouts


def _pure_layout(strategy: str, ranks: int) -> Layout:
    return {"data": Layout(data=ranks), "zero": Layout(data=ranks, zero=True),
            "pipeline": Layout(pipeline=ranks), "tensor": Layout(tensor=ranks)}[strategy]


def plan_ranks(spec: ModelSpec, batch: int, ranks: int, profile: Profile,
               memory_limit_bytes: float | None = None, bucket_mb: float = DEFAULT_BUCKET_MB,
               strategies: tuple[str, ...] = STRATEGIES) -> RankPlan:
    """Best layout of each of ``strategies`` at ``ranks`` and the fastest one that fits."""
    best: dict[str, Prediction] = {}
    reasons: dict[str, str] = {}
    for layout in candidate_layouts(spec, batch, ranks):
        if ranks > 1 and layout.strategy not in strategies:
            continue
        try:
            prediction = predict_layout(spec, batch, layout, profile, bucket_mb)
        except ConfigError as exc:
            reasons.setdefault(layout.strategy, str(exc))
            continue
        current = best.get(layout.strategy)
        if current is None or prediction.step_s < current.step_s:
            best[layout.strategy] = prediction
    wanted = ("data",) if ranks == 1 else strategies
    unavailable = {}
    for strategy in wanted:
        if strategy not in best:
            unavailable[strategy] = reasons.get(strategy) or _why_missing(strategy, spec, batch, ranks, profile)
    fitting = [p for p in best.values()
               if memory_limit_bytes is None or p.memory_bytes <= memory_limit_bytes]
    recommended = min(fitting, key=lambda p: p.step_s) if fitting else None
    return RankPlan(ranks, {s: best[s] for s in wanted if s in best}, unavailable, recommended)


def _why_missing(strategy: str, spec: ModelSpec, batch: int, ranks: int, profile: Profile) -> str:
    if strategy == "grid":
        return f"{ranks} ranks have no data x pipeline x tensor split of two or more dimensions that runs"
    try:
        predict_layout(spec, batch, _pure_layout(strategy, ranks), profile)
    except ConfigError as exc:
        return str(exc)
    return "no layout tried"


def plan(spec: ModelSpec, batch: int, ranks_list: list[int], profile: Profile,
         memory_limit_bytes: float | None = None, bucket_mb: float = DEFAULT_BUCKET_MB,
         strategies: tuple[str, ...] = STRATEGIES) -> list[RankPlan]:
    """A :class:`RankPlan` per rank count (one rank is always plain data parallelism)."""
    require_positive_int("option batch_size", batch)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ConfigError(f"unknown strategy {unknown[0] if unknown else ''!r}; choose any of: "
                          f"{', '.join(STRATEGIES)}")
    return [plan_ranks(spec, batch, r, profile, memory_limit_bytes, bucket_mb, strategies)
            for r in ranks_list]


def efficiency(prediction: Prediction, single_rank_s: float) -> float:
    """Strong-scaling efficiency: one rank's step time / (ranks x this step time)."""
    return single_rank_s / (prediction.layout.ranks * prediction.step_s)


def prediction_dict(prediction: Prediction, single_rank_s: float) -> dict:
    return {"strategy": prediction.strategy, "layout": asdict(prediction.layout),
            "step_s": prediction.step_s, "compute_s": prediction.compute_s,
            "comm_s": prediction.comm_s, "idle_s": prediction.idle_s,
            "efficiency": efficiency(prediction, single_rank_s),
            "memory_bytes_per_rank": prediction.memory_bytes}


def overall_best(plans: list[RankPlan]) -> RankPlan | None:
    """The rank count whose recommended layout is fastest (fewer ranks on a tie): more ranks
    than that only add communication."""
    fitting = [rp for rp in plans if rp.recommended is not None]
    return min(fitting, key=lambda rp: (rp.recommended.step_s, rp.ranks)) if fitting else None
