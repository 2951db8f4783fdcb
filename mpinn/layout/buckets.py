"""Gradient buckets: the slices of the flat gradient that data parallelism reduces one by one
while backward goes on, and that the planner prices the same way."""

from __future__ import annotations


def plan_buckets(layer_offsets: list[int], param_layers: list[int], total: int,
                 bucket_elems: int) -> list[tuple[int, int]]:
    """Slices [lo, hi) of the flat buffer, from its end to its start, cut at layer boundaries,
    each holding at least ``bucket_elems`` elements (except possibly the first one)."""
    buckets, hi = [], total
    for index in reversed(param_layers):
        lo = layer_offsets[index]
        if hi - lo >= bucket_elems or index == param_layers[0]:
            buckets.append((lo, hi))
            hi = lo
    return buckets
