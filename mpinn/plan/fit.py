"""Fit calibration measurements to the alpha-beta and throughput models (pure functions).

Every model here is linear in its two unknowns for a fixed algorithm, t = a*A + b*B, so a
least-squares fit of the RELATIVE error (weights 1/t) is a 2x2 solve. A collective whose
time is the cheapest of several algorithms is fitted by alternating: assign each size the
algorithm the current fit says is cheapest, refit, until the assignment settles; the final
assignment is the algorithm "it can tell" the MPI library used at each size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from mpinn.errors import ConfigError
from mpinn.plan.costs import ALLREDUCE_ALGORITHMS, halving_or_ring_seconds
from mpinn.plan.profile import AlphaBeta

Formula = Callable[[float, int, AlphaBeta], float]
UNIT_ALPHA, UNIT_BETA = AlphaBeta(1.0, 0.0), AlphaBeta(0.0, 1.0)


def relative_least_squares(terms: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """Non-negative (a, b) minimising sum(((a*A + b*B) - t) / t)^2 over (A, B, t) rows."""
    if not terms:
        raise ConfigError("no measurements to fit")
    saa = sab = sbb = sat = sbt = 0.0
    for a_coef, b_coef, t in terms:
        a_coef, b_coef = a_coef / t, b_coef / t
        saa, sab, sbb = saa + a_coef * a_coef, sab + a_coef * b_coef, sbb + b_coef * b_coef
        sat, sbt = sat + a_coef, sbt + b_coef
    det = saa * sbb - sab * sab
    if det > 1e-12 * saa * sbb:
        a, b = (sat * sbb - sbt * sab) / det, (saa * sbt - sab * sat) / det
        if a >= 0 and b >= 0:
            return a, b
    only_a = (sat / saa if saa else 0.0, 0.0)
    only_b = (0.0, sbt / sbb if sbb else 0.0)
    return min(only_a, only_b, key=lambda ab: _relative_error(terms, *ab))


def _relative_error(terms, a: float, b: float) -> float:
    return sum(((a * a_coef + b * b_coef) - t) ** 2 / t**2 for a_coef, b_coef, t in terms)


def _terms(points, p: int, formulas: Sequence[Formula]) -> list[tuple[float, float, float]]:
    return [(f(n, p, UNIT_ALPHA), f(n, p, UNIT_BETA), t) for (n, t), f in zip(points, formulas)]


def fit_algorithms(points: Sequence[tuple[float, float]], p: int,
                   algorithms: dict[str, Formula]) -> tuple[AlphaBeta, list[str]]:
    """Alpha-beta of a collective that runs the cheapest of ``algorithms`` at each size, and
    the algorithm assigned to each point."""
    names = list(algorithms)
    best = None
    for start in names:
        chosen = [start] * len(points)
        for _ in range(10):
            a, b = relative_least_squares(_terms(points, p, [algorithms[c] for c in chosen]))
            cost = AlphaBeta(a, b)
            again = [min(names, key=lambda name: algorithms[name](n, p, cost)) for n, _ in points]
            if again == chosen:
                break
            chosen = again
        error = _relative_error(_terms(points, p, [algorithms[c] for c in chosen]), a, b)
        if best is None or error < best[0]:
            best = (error, cost, chosen)
    return best[1], best[2]


def fit_point_to_point(points: Sequence[tuple[float, float]]) -> AlphaBeta:
    """Latency and per-byte time from ping-pong one-way times (bytes, seconds)."""
    a, b = relative_least_squares([(1.0, n, t) for n, t in points])
    return AlphaBeta(a, b)


COLLECTIVE_ALGORITHMS: dict[str, dict[str, Formula]] = {
    "allreduce": ALLREDUCE_ALGORITHMS,
    "reduce_scatter": {"ring_or_halving": halving_or_ring_seconds},
    "allgather": {"ring_or_doubling": halving_or_ring_seconds},
}


def nonnegative_relative_fit(columns: Sequence[Sequence[float]], seconds: Sequence[float]) -> list[float]:
    """Non-negative coefficients c minimising sum((sum_j c_j * columns[j][i] - t_i) / t_i)^2:
    least squares, dropping any term that comes out negative and refitting the rest."""
    t = np.asarray(seconds, dtype=float)
    design = np.asarray(columns, dtype=float).T / t[:, None]
    active = list(range(len(columns)))
    while active:
        solution, *_ = np.linalg.lstsq(design[:, active], np.ones(len(t)), rcond=None)
        if (solution >= 0).all():
            coefficients = [0.0] * len(columns)
            for j, value in zip(active, solution):
                coefficients[j] = float(value)
            return coefficients
        active.pop(int(np.argmin(solution)))
    return [0.0] * len(columns)


def fit_gemm(points: Sequence[tuple[int, int, int, float]], dtype_bytes: int = 4) -> tuple[float, float, float]:
    """(flops per second, operand bytes per second, overhead seconds per call) from
    (m, k, n, seconds) matmul timings: t = overhead + (mk + kn + mn) bytes / B + 2mkn / R.
    The operand term is what makes thin matmuls (few rows) slower per flop."""
    terms = {"overhead": [1.0] * len(points),
             "bytes": [dtype_bytes * (m * k + k * n + m * n) for m, k, n, _ in points],
             "flops": [2.0 * m * k * n for m, k, n, _ in points]}
    seconds = [t for *_, t in points]
    # The flop term must stay: on tiny shapes the others can explain the times without it.
    for names in (("overhead", "bytes", "flops"), ("overhead", "flops"), ("flops",)):
        fitted = dict(zip(names, nonnegative_relative_fit([terms[n] for n in names], seconds)))
        if fitted["flops"] > 0:
            per_byte = fitted.get("bytes", 0.0)
            return 1.0 / fitted["flops"], 1.0 / per_byte if per_byte > 0 else math.inf, fitted.get("overhead", 0.0)
    raise ConfigError("matmul timings do not grow with size; calibrate on a quieter machine")
