"""Which layers (and which slices of them) a rank holds: pipeline stage bounds and
tensor-parallel slices, computed from a description of the model as plain data.

A model is described by its layers' type names, parameter counts and widths
(``widths[i]`` enters layer i, ``widths[-1]`` leaves the model). A *block* is a layer with
parameters plus the parameter-free layers after it; stages are runs of whole blocks, so
every stage owns parameters and an activation stays with the Dense before it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from mpinn.errors import ConfigError

ELEMENTWISE = ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout")
WHOLE, COLUMN, ROW = "whole", "column", "row"


class SlicedLayer(NamedTuple):
    """Layer ``index`` of the whole model, held whole or as the columns/rows [lo, hi)."""

    index: int
    split: str = WHOLE
    lo: int = 0
    hi: int = 0


class LocalPlan(NamedTuple):
    """What one rank builds: layers [start, stop) of the model, some of them sliced."""

    start: int
    stop: int
    layers: list[SlicedLayer]


def block_starts(param_counts: list[int]) -> list[int]:
    """Layer index where each block starts (the first block also takes leading free layers)."""
    starts = [i for i, count in enumerate(param_counts) if count]
    return [0] + starts[1:] if starts else []


def either(numbers: list[int]) -> str:
    """'1, 2 or 3': the valid choices in an error message."""
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def partition_blocks(costs: list[float], parts: int) -> list[int]:
    """Split consecutive blocks into ``parts`` non-empty runs minimising the largest run's cost;
    returns the index of the first block of each run."""
    n = len(costs)
    prefix = [0.0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    best = [[math.inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for p in range(1, parts + 1):
        for end in range(p, n - parts + p + 1):
            for start in range(p - 1, end):
                value = max(best[p - 1][start], prefix[end] - prefix[start])
                if value < best[p][end]:
                    best[p][end], cut[p][end] = value, start
    starts, end = [], n
    for p in range(parts, 0, -1):
        end = cut[p][end]
        starts.append(end)
    return starts[::-1]


def stage_bounds(param_counts: list[int], stages: int, boundaries: tuple[int, ...] = (),
                 costs: list[float] | None = None) -> list[tuple[int, int]]:
    """Layer ranges [start, stop) of the ``stages`` pipeline stages.

    ``boundaries`` (the layer index where each stage after the first starts) wins if given;
    otherwise blocks are balanced by ``costs`` (one per block; parameter counts by default).
    """
    starts = block_starts(param_counts)
    if not 1 <= stages <= len(starts):
        raise ConfigError(f"cannot split a model with {len(starts)} layers that hold parameters "
                          f"into {stages} pipeline stages; choose "
                          f"{either(list(range(1, len(starts) + 1)))} stages")
    if boundaries:
        first_layers = [0, *_checked_boundaries(param_counts, stages, boundaries)]
    else:
        costs = costs or [sum(param_counts[a:b]) for a, b in zip(starts, starts[1:] + [len(param_counts)])]
        first_layers = [starts[b] for b in partition_blocks(costs, stages)]
    return list(zip(first_layers, first_layers[1:] + [len(param_counts)]))


def _checked_boundaries(param_counts: list[int], stages: int, boundaries: tuple[int, ...]) -> list[int]:
    n = len(param_counts)
    bounds = list(boundaries)
    if len(bounds) != stages - 1:
        raise ConfigError(f"{stages} pipeline stages need {stages - 1} boundaries (the layer index "
                          f"where each later stage starts), got {len(bounds)}: {bounds}")
    if bounds != sorted(set(bounds)) or not all(0 < b < n for b in bounds):
        raise ConfigError(f"stage boundaries must be increasing layer indices in 1..{n - 1}, got {bounds}")
    for s, (a, b) in enumerate(zip([0, *bounds], [*bounds, n])):
        if not any(param_counts[a:b]):
            raise ConfigError(f"stage {s} (layers {a}..{b - 1}) holds no parameters; with layers "
                              f"holding parameters at {[i for i, c in enumerate(param_counts) if c]}, "
                              f"move the boundaries")
    return bounds


def dense_pairs(types: list[str], start: int, stop: int) -> list[tuple[int, int]]:
    """(column, row) pairs in layers [start, stop): a Dense, element-wise layers, a Dense."""
    pairs, i = [], start
    while i < stop:
        j = i + 1
        while j < stop and types[j] in ELEMENTWISE:
            j += 1
        if types[i] == "Dense" and j < stop and types[j] == "Dense":
            pairs.append((i, j))
            i = j + 1
        else:
            i += 1
    return pairs


def tensor_slices(types: list[str], widths: list[int], start: int, stop: int, tensor: int,
                  tensor_rank: int) -> list[SlicedLayer]:
    """Layers [start, stop) for one tensor-parallel rank: in each Dense pair the first is cut by
    output columns and the second by input rows over ``tensor`` ranks; the rest stay whole."""
    pairs = dense_pairs(types, start, stop) if tensor > 1 else []
    cut = {}
    for column, row in pairs:
        width = widths[column + 1] // tensor
        span = (tensor_rank * width, (tensor_rank + 1) * width)
        cut[column], cut[row] = (COLUMN, *span), (ROW, *span)
    return [SlicedLayer(i, *cut.get(i, (WHOLE, 0, 0))) for i in range(start, stop)]


def check_divisible(pairs: list[tuple[int, int]], widths: list[int], tensor: int) -> None:
    """ConfigError naming the valid rank counts unless every (column, row) pair's inner width
    divides by ``tensor`` (the pipeline strategy's check; the planner's too)."""
    if not pairs:
        raise ConfigError(f"tensor parallelism over {tensor} ranks needs a Dense layer followed "
                          f"(after element-wise activations) by another Dense; the model has none")
    hidden = [widths[column + 1] for column, _ in pairs]
    common = math.gcd(*hidden)
    if common % tensor:
        valid = [d for d in range(1, common + 1) if common % d == 0]
        raise ConfigError(f"hidden width(s) {hidden} are not divisible by {tensor} tensor-parallel "
                          f"ranks; choose {either(valid)} ranks")


def plan_local_model(types: list[str], param_counts: list[int], widths: list[int], stages: int,
                     stage: int, tensor: int, tensor_rank: int, boundaries: tuple[int, ...] = (),
                     costs: list[float] | None = None) -> LocalPlan:
    """The layers one rank of a pipeline x tensor grid holds (validated on every rank alike)."""
    bounds = stage_bounds(param_counts, stages, boundaries, costs)
    if tensor > 1:
        check_divisible([p for a, b in bounds for p in dense_pairs(types, a, b)], widths, tensor)
    start, stop = bounds[stage]
    return LocalPlan(start, stop, tensor_slices(types, widths, start, stop, tensor, tensor_rank))
