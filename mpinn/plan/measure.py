"""Local compute measurements for calibration: matmul timings and streaming bandwidth.

Pure numpy (no MPI): the calibrate command runs these on every rank at once, so the
figures include the contention of ranks sharing a node.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from mpinn.plan.workload import ModelSpec


def median_call_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_gemm_shapes(spec: ModelSpec, rows: int) -> list[tuple[int, int, int]]:
    """The (m, k, n) of every matmul a training step of ``spec`` on ``rows`` rows runs:
    forward x @ W, backward x.T @ dout and dout @ W.T."""
    shapes = []
    for i in range(spec.num_layers):
        fan_in, fan_out = spec.layer_shape(i)
        shapes += [(rows, fan_in, fan_out), (fan_in, rows, fan_out), (rows, fan_out, fan_in)]
    return shapes


def time_gemm(m: int, k: int, n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    return median_call_seconds(lambda: np.matmul(a, b, out=out), repeats)


def gemm_points(spec: ModelSpec, rows_list: list[int], repeats: int) -> list[tuple[int, int, int, float]]:
    """(m, k, n, seconds) for the model's matmul shapes at each row count."""
    shapes = sorted({s for rows in rows_list for s in model_gemm_shapes(spec, rows)})
    return [(m, k, n, time_gemm(m, k, n, repeats)) for m, k, n in shapes]


def stream_bytes_per_s(elements: int, repeats: int) -> float:
    """Bytes per second of ``a += b`` on float32 arrays (two reads and a write each)."""
    a = np.ones(elements, dtype=np.float32)
    b = np.ones(elements, dtype=np.float32)

    def add() -> None:
        a.__iadd__(b)
    return 12.0 * elements / median_call_seconds(add, repeats)
