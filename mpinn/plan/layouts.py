"""How a layout divides the model: pipeline stages, tensor-parallel pairs, gradient buckets.

The very plans mpinn's strategies make (:mod:`mpinn.layout`), read off a model's widths, so the
cost model sees the same pieces.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from mpinn.layout.buckets import plan_buckets
from mpinn.layout.stages import check_divisible, dense_pairs, stage_bounds
from mpinn.plan.workload import ModelSpec


@dataclass(frozen=True)
class Layout:
    """data x pipeline x tensor ranks (tensor innermost, then pipeline, then data in rank
    order); ``zero`` shards optimizer state over the data group; ``micro_batches`` per step."""

    data: int = 1
    pipeline: int = 1
    tensor: int = 1
    zero: bool = False
    micro_batches: int = 1

    @property
    def ranks(self) -> int:
        return self.data * self.pipeline * self.tensor

    @property
    def strategy(self) -> str:
        """data, zero, pipeline, tensor, or grid (two or more dimensions above one)."""
        split = [name for name in ("data", "pipeline", "tensor") if getattr(self, name) > 1]
        if len(split) > 1:
            return "grid"
        if self.zero:
            return "zero"
        return split[0] if split else "data"

    def describe(self) -> str:
        text = f"d{self.data} x p{self.pipeline} x t{self.tensor}"
        if self.pipeline > 1:
            text += f", m={self.micro_batches}"
        return text + (", zero" if self.zero else "")


def partition_stages(spec: ModelSpec, stages: int) -> list[range]:
    """Contiguous layer ranges, one per stage: the partition the pipeline strategy makes
    (:func:`~mpinn.layout.stages.stage_bounds` of the layers' parameter counts)."""
    return [range(a, b) for a, b in stage_bounds(_param_counts(spec), stages)]


def tensor_pairs(layers: range) -> tuple[list[tuple[int, int]], list[int]]:
    """The (column-parallel, row-parallel) Dense pairs of ``layers`` the tensor strategy cuts
    (:func:`~mpinn.layout.stages.dense_pairs`), and the layers left whole on every tensor rank."""
    pairs = dense_pairs(["Dense"] * layers.stop, layers.start, layers.stop)
    paired = {i for pair in pairs for i in pair}
    return pairs, [i for i in layers if i not in paired]


def check_tensor_split(spec: ModelSpec, stages: list[range], tensor: int) -> None:
    """Raise as the tensor strategy does unless every pair's inner width divides by ``tensor``."""
    if tensor > 1:
        check_divisible([pair for stage in stages for pair in tensor_pairs(stage)[0]],
                        list(spec.widths), tensor)


def rank_params(spec: ModelSpec, layers: range, tensor: int) -> float:
    """Parameters one tensor rank holds for ``layers`` (row-parallel biases are replicated)."""
    pairs, rest = tensor_pairs(layers)
    total = sum(spec.layer_params(i) for i in rest)
    for col, row in pairs:
        total += spec.layer_params(col) / tensor
        fan_in, fan_out = spec.layer_shape(row)
        total += fan_in * fan_out / tensor + fan_out
    return total


def gradient_buckets(spec: ModelSpec, bucket_bytes: float) -> list[tuple[int, int]]:
    """(first layer, elements) of each bucket DataParallel reduces, in the order it starts
    them (:func:`~mpinn.layout.buckets.plan_buckets` over the layers' parameters)."""
    counts = _param_counts(spec)
    offsets = list(itertools.accumulate(counts, initial=0))
    first_layer = {offset: index for index, offset in enumerate(offsets[:-1])}
    buckets = plan_buckets(offsets[:-1], list(range(len(counts))), offsets[-1],
                           max(1, int(bucket_bytes) // spec.dtype_bytes))
    return [(first_layer[lo], hi - lo) for lo, hi in buckets]


def _param_counts(spec: ModelSpec) -> list[int]:
    return [spec.layer_params(i) for i in range(spec.num_layers)]
