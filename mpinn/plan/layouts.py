"""How a layout divides the model: pipeline stages, tensor-parallel pairs, gradient buckets.

Pure functions mirroring what mpinn's strategies do, so the cost model sees the same pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpinn.errors import ConfigError
from mpinn.layout.stages import partition_blocks
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
    """Contiguous layer ranges, one per stage, minimising the largest stage's parameter count
    (the same partition the pipeline strategy makes)."""
    n = spec.num_layers
    if not 1 <= stages <= n:
        raise ConfigError(f"{n} layers cannot be split into {stages} pipeline stages; "
                          f"choose 1 to {n} stages")
    starts = partition_blocks([spec.layer_params(i) for i in range(n)], stages) + [n]
    return [range(starts[k], starts[k + 1]) for k in range(stages)]


def tensor_pairs(layers: range) -> tuple[list[tuple[int, int]], list[int]]:
    """Consecutive (column-parallel, row-parallel) Dense pairs of ``layers``, and the layer
    left over (replicated on every tensor rank) when the count is odd."""
    indices = list(layers)
    pairs = [(indices[i], indices[i + 1]) for i in range(0, len(indices) - 1, 2)]
    return pairs, indices[2 * len(pairs):]


def check_tensor_split(spec: ModelSpec, stages: list[range], tensor: int) -> None:
    """Raise unless every pair's inner width divides by ``tensor``, naming valid sizes."""
    if tensor == 1:
        return
    widths = {spec.widths[col + 1] for stage in stages for col, _ in tensor_pairs(stage)[0]}
    if not widths:
        raise ConfigError("tensor parallelism needs a stage with two or more Dense layers")
    bad = sorted(w for w in widths if w % tensor)
    if bad:
        valid = [d for d in range(2, min(widths) + 1) if all(w % d == 0 for w in widths)][:8]
        raise ConfigError(f"hidden width {bad[0]} is not divisible by {tensor} tensor-parallel "
                          f"ranks; choose {', '.join(map(str, valid)) or 'no tensor split'}")


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
    them: cut at layer boundaries from the end of the flat buffer, each bucket at least
    ``bucket_bytes`` (the first layer's bucket may be smaller). See ``plan_buckets``."""
    bucket_elems = max(1, int(bucket_bytes) // spec.dtype_bytes)
    offsets = [0]
    for i in range(spec.num_layers):
        offsets.append(offsets[-1] + spec.layer_params(i))
    buckets, hi = [], offsets[-1]
    for index in reversed(range(spec.num_layers)):
        if hi - offsets[index] >= bucket_elems or index == 0:
            buckets.append((index, hi - offsets[index]))
            hi = offsets[index]
    return buckets
