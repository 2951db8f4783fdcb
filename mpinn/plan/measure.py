"""Local compute measurements for calibration: matmul timings and streaming bandwidth.

Pure numpy (no MPI): the calibrate command runs these on every rank at once, so the
figures include the contention of ranks sharing a node.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable

import numpy as np

from mpinn.plan.workload import ModelSpec

MAX_WORKING_SET_BYTES = 2**28  # 256 MiB of operand copies at most


def sustained_call_seconds(fn: Callable[[], object], min_seconds: float) -> float:
    """Mean wall time of ``fn()`` over as many calls as fill ``min_seconds`` (after one
    warm-up call). A window of several scheduler time slices sees the share of a core a rank
    really gets when ranks outnumber cores; the median of short calls would not."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def median_call_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_gemm_shapes(spec: ModelSpec, rows: int, splits: tuple[int, ...] = ()) -> list[tuple[int, int, int]]:
    """The (m, k, n) of every matmul a training step of ``spec`` on ``rows`` rows runs:
    forward x @ W, backward x.T @ dout and dout @ W.T; with each tensor-parallel split t in
    ``splits``, also those of every layer's slices (W's columns or rows in t parts)."""
    weights = set()
    for i in range(spec.num_layers):
        fan_in, fan_out = spec.layer_shape(i)
        weights.add((fan_in, fan_out))
        weights |= {(fan_in, fan_out // t) for t in splits if fan_out % t == 0}
        weights |= {(fan_in // t, fan_out) for t in splits if fan_in % t == 0}
    shapes = []
    for fan_in, fan_out in sorted(weights):
        shapes += [(rows, fan_in, fan_out), (fan_in, rows, fan_out), (rows, fan_out, fan_in)]
    return shapes


def time_gemm(m: int, k: int, n: int, min_seconds: float, working_set_bytes: float = 0.0) -> float:
    """Seconds of one (m x k) @ (k x n) matmul, cycling through copies of its operands that
    together hold ``working_set_bytes`` (at most :data:`MAX_WORKING_SET_BYTES`): a training
    step meets each weight again only after the rest of the model has passed through the
    cache, and a thin matmul, which streams its weight for few rows, is slower from memory."""
    rng = np.random.default_rng(0)
    one_set = 4 * (m * k + k * n + m * n)
    copies = max(1, math.ceil(min(working_set_bytes, MAX_WORKING_SET_BYTES) / one_set))
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    operands = [(a.copy(), b.copy(), np.ones((m, n), dtype=np.float32)) for _ in range(copies)]
    sets = itertools.cycle(operands)

    def call() -> None:
        a, b, out = next(sets)
        np.matmul(a, b, out=out)
    return sustained_call_seconds(call, min_seconds)


def gemm_points(spec: ModelSpec, rows_list: list[int], min_seconds: float,
                splits: tuple[int, ...] = ()) -> list[tuple[int, int, int, float]]:
    """(m, k, n, seconds) for the model's matmul shapes (and tensor slices) at each row count,
    each timed with operands cycling through as many bytes as the model's parameters and
    gradients (what a step streams through)."""
    shapes = sorted({s for rows in rows_list for s in model_gemm_shapes(spec, rows, splits)})
    working_set = 2 * 4 * spec.num_params
    return [(m, k, n, time_gemm(m, k, n, min_seconds, working_set)) for m, k, n in shapes]


def stream_bytes_per_s(elements: int, min_seconds: float) -> float:
    """Bytes per second of ``a += b`` on float32 arrays (two reads and a write each)."""
    a = np.ones(elements, dtype=np.float32)
    b = np.ones(elements, dtype=np.float32)

    def add() -> None:
        a.__iadd__(b)
    return 12.0 * elements / sustained_call_seconds(add, min_seconds)
