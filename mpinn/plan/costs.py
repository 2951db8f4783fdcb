"""Alpha-beta cost formulas of the MPI operations mpinn uses (pure functions, no MPI).

A message of n bytes costs alpha + n * beta. A collective over p ranks is a sequence of
such steps; the formulas below are the textbook ones (Thakur, Rabenseifner & Gropp 2005).
An MPI library picks among its algorithms by message size and p, so a collective's time
is the cheapest of its algorithms (:func:`allreduce_seconds` and friends).
"""

from __future__ import annotations

import math

from mpinn.plan.profile import AlphaBeta


def point_to_point_seconds(nbytes: float, cost: AlphaBeta) -> float:
    """One message of ``nbytes`` from one rank to another (corrected by measured points)."""
    return _one_message(nbytes, 2, cost) * measured_ratio(_one_message, nbytes, cost)


def _one_message(nbytes: float, p: int, cost: AlphaBeta) -> float:
    return cost.alpha_s + nbytes * cost.beta_s_per_byte


def ring_allreduce_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Ring: reduce-scatter then allgather, 2(p-1) steps of n/p bytes each."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * cost.alpha_s + 2 * (p - 1) / p * nbytes * cost.beta_s_per_byte


def recursive_doubling_allreduce_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Recursive doubling: ceil(log2 p) exchanges of the whole buffer (best for small n)."""
    if p <= 1:
        return 0.0
    return math.ceil(math.log2(p)) * (cost.alpha_s + nbytes * cost.beta_s_per_byte)


def rabenseifner_allreduce_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Recursive halving reduce-scatter + recursive doubling allgather (best for large n, p)."""
    if p <= 1:
        return 0.0
    return 2 * math.ceil(math.log2(p)) * cost.alpha_s + 2 * (p - 1) / p * nbytes * cost.beta_s_per_byte


ALLREDUCE_ALGORITHMS = {
    "ring": ring_allreduce_seconds,
    "recursive_doubling": recursive_doubling_allreduce_seconds,
    "rabenseifner": rabenseifner_allreduce_seconds,
}


def allreduce_algorithm(nbytes: float, p: int, cost: AlphaBeta) -> str:
    """The cheapest allreduce algorithm for this size and rank count."""
    return min(ALLREDUCE_ALGORITHMS, key=lambda name: ALLREDUCE_ALGORITHMS[name](nbytes, p, cost))


def _fastest_allreduce(nbytes: float, p: int, cost: AlphaBeta) -> float:
    return min(algorithm(nbytes, p, cost) for algorithm in ALLREDUCE_ALGORITHMS.values())


def halving_or_ring_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Reduce-scatter (or allgather) of an ``nbytes`` buffer, n/p per rank: (p-1)/p of the
    bytes, behind log2 p (recursive halving/doubling) or p-1 (ring) latencies."""
    if p <= 1:
        return 0.0
    volume = (p - 1) / p * nbytes * cost.beta_s_per_byte
    return min((p - 1) * cost.alpha_s, math.ceil(math.log2(p)) * cost.alpha_s) + volume


def measured_ratio(formula, nbytes: float, cost: AlphaBeta) -> float:
    """Measured / formula time at the calibration's sizes, interpolated in log size (held at
    the end values beyond them); 1 when the cost carries no measurements."""
    ratios = [(math.log(n), t / formula(n, cost.measured_ranks, cost)) for n, t in cost.measured
              if formula(n, cost.measured_ranks, cost) > 0]
    return interpolate(ratios, math.log(max(nbytes, 1.0))) if ratios else 1.0


def interpolate(points: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through (x, y) points (sorted here; the last y of a repeated x
    counts), constant beyond the end points."""
    points = sorted(dict(points).items())
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def allreduce_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Allreduce of an ``nbytes`` buffer over ``p`` ranks with the cheapest algorithm."""
    return _fastest_allreduce(nbytes, p, cost) * measured_ratio(_fastest_allreduce, nbytes, cost)


def reduce_scatter_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Reduce-scatter of an ``nbytes`` buffer (each rank keeps n/p)."""
    return halving_or_ring_seconds(nbytes, p, cost) * measured_ratio(halving_or_ring_seconds, nbytes, cost)


def allgather_seconds(nbytes: float, p: int, cost: AlphaBeta) -> float:
    """Allgather into an ``nbytes`` buffer (each rank brings n/p)."""
    return reduce_scatter_seconds(nbytes, p, cost)


COLLECTIVE_SECONDS = {
    "allreduce": allreduce_seconds,
    "reduce_scatter": reduce_scatter_seconds,
    "allgather": allgather_seconds,
}


def pipeline_bubble_fraction(stages: int, micro_batches: int) -> float:
    """Share of a GPipe / 1F1B step that a stage sits idle: (p-1) / (m+p-1)."""
    return (stages - 1) / (micro_batches + stages - 1)


def overlapped_finish(ready_s: list[float], durations_s: list[float], compute_end_s: float,
                      overlap: float) -> float:
    """When the last of several non-blocking operations completes.

    Operation k may start at ``ready_s[k]`` and runs ``durations_s[k]``, one after another.
    With ``overlap`` = 1 they progress while the rank computes (until ``compute_end_s``);
    with 0 they only progress once it waits after computing (MPI progress at MPI calls).
    In between, the two finish times are interpolated.
    """
    free = 0.0
    for ready, duration in zip(ready_s, durations_s):
        free = max(free, ready) + duration
    asynchronous = max(compute_end_s, free)
    serial = compute_end_s + sum(durations_s)
    return overlap * asynchronous + (1 - overlap) * serial
