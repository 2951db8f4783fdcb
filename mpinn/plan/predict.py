"""Predicted step time of one layout: compute, exposed communication, pipeline idle, memory.

Data parallelism is modelled as :class:`mpinn.parallel.DataParallel` runs it: forward, then
backward layer by layer in reverse; each gradient bucket's Iallreduce starts when backward
has finished its first layer and the buckets progress in order, overlapping the rest of
backward by the profile's ``overlap`` share; then the optimizer step.

Pipeline (1F1B or GPipe: the same time), tensor and grid layouts: each micro-batch runs
every stage once forward and once backward; a stage's work per micro-batch is its compute,
its tensor-parallel Allreduces (blocking, one forward and one backward per column/row pair)
and its point-to-point sends. With m micro-batches the step takes
sum(stage times) + (m-1) x max(stage time): the bubble is (p-1)/(m+p-1) for equal stages.
Then the stage's gradients are reduced over the data group (Allreduce, or reduce-scatter +
allgather with ZeRO) after the flush, and the optimizer steps its part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpinn.errors import ConfigError
from mpinn.plan import costs
from mpinn.plan.layouts import (Layout, check_tensor_split, gradient_buckets, partition_stages,
                                rank_params, tensor_pairs)
from mpinn.plan.profile import Profile, compute_slowdown
from mpinn.plan.workload import ComputeCost, ModelSpec, activation_bytes, state_bytes

DEFAULT_BUCKET_MB = 4.0  # DataParallel's default bucket size


@dataclass(frozen=True)
class Prediction:
    """One layout's predicted step on its busiest rank; step = compute + comm + idle."""

    layout: Layout
    step_s: float
    compute_s: float
    comm_s: float
    idle_s: float
    memory_bytes: float

    @property
    def strategy(self) -> str:
        return self.layout.strategy


class _Context:
    """The profile seen from one layout: compute speed and the link of each group."""

    def __init__(self, spec: ModelSpec, profile: Profile, layout: Layout) -> None:
        self.spec, self.profile, self.layout = spec, profile, layout
        ranks_on_node = min(layout.ranks, profile.ranks_per_node)
        self.cost = ComputeCost(profile.compute, compute_slowdown(profile, ranks_on_node))

    def step_cost(self, collective: str, group_span: int):
        """Per-step alpha-beta of ``collective`` in a group whose ranks span ``group_span``
        consecutive ranks (inter-node once that exceeds a node)."""
        return self.profile.link(group_span > self.profile.ranks_per_node).step_cost(collective)

    def p2p(self, nbytes: float, stage: int) -> float:
        """A message between pipeline stages ``stage`` and ``stage + 1``, one of a stream (one
        per micro-batch): no faster than the link's sustained rate. Across nodes, the messages
        of every replica and tensor rank that leave one node at once share its link."""
        sharing = messages_leaving_a_node(self.layout, self.profile.ranks_per_node, stage)
        link = self.profile.link(sharing > 0)
        one = max(costs.point_to_point_seconds(nbytes, link.message), nbytes / link.sustained_bytes_per_s)
        return one * max(1, sharing)


def messages_leaving_a_node(layout: Layout, ranks_per_node: int, stage: int) -> int:
    """The most messages between stages ``stage`` and ``stage + 1`` that leave one node at
    once (0: the boundary stays within nodes). Ranks fill nodes in order, tensor fastest,
    then pipeline, then data (GridShape's order); each tensor rank of a stage talks to its
    counterpart of the next stage."""
    leaving: dict[int, int] = {}
    for d in range(layout.data):
        for t in range(layout.tensor):
            rank = (d * layout.pipeline + stage) * layout.tensor + t
            if rank // ranks_per_node != (rank + layout.tensor) // ranks_per_node:
                leaving[rank // ranks_per_node] = leaving.get(rank // ranks_per_node, 0) + 1
    return max(leaving.values(), default=0)


def _require_rows(batch: int, layout: Layout) -> int:
    rows = math.ceil(batch / layout.data)
    if layout.data > batch:
        raise ConfigError(f"a global batch of {batch} cannot feed {layout.data} data-parallel ranks")
    if layout.micro_batches > rows:
        raise ConfigError(f"{layout.micro_batches} micro-batches exceed the {rows} rows per replica")
    return rows


def predict_data_parallel(spec: ModelSpec, batch: int, ranks: int, profile: Profile,
                          bucket_mb: float = DEFAULT_BUCKET_MB) -> Prediction:
    """Bucketed Iallreduce overlapping backward, as DataParallel does it."""
    layout = Layout(data=ranks)
    rows = _require_rows(batch, layout)
    ctx = _Context(spec, profile, layout)
    forward = sum(ctx.cost.forward(spec, i, rows) for i in range(spec.num_layers))
    done_at, clock = {}, forward
    for i in reversed(range(spec.num_layers)):
        clock += ctx.cost.backward(spec, i, rows)
        done_at[i] = clock
    finish = clock
    if ranks > 1:
        step = ctx.step_cost("allreduce", ranks)
        buckets = gradient_buckets(spec, bucket_mb * 2**20)
        durations = [costs.allreduce_seconds(n * spec.dtype_bytes, ranks, step) for _, n in buckets]
        finish = costs.overlapped_finish([done_at[first] for first, _ in buckets], durations,
                                         clock, profile.network.overlap)
    update = ctx.cost.update(spec, spec.num_params)
    memory = state_bytes(spec, spec.num_params) + activation_bytes(spec, range(spec.num_layers), rows)
    return Prediction(layout, finish + update, clock + update, finish - clock, 0.0, memory)


def _stage_micro_batch(ctx: _Context, index: int, stage: range, rows: int, last: bool) -> tuple[float, float]:
    """(compute, communication) seconds of one stage for one micro-batch, forward + backward."""
    spec, t, cost = ctx.spec, ctx.layout.tensor, ctx.cost
    pairs, rest = tensor_pairs(stage) if t > 1 else ([], list(stage))
    compute = sum(cost.forward(spec, i, rows) + cost.backward(spec, i, rows) for i in rest)
    comm = 0.0
    reduce_step = ctx.step_cost("allreduce", t) if t > 1 else None
    for col, row in pairs:
        compute += cost.forward(spec, col, rows, split_out=t) + cost.backward(spec, col, rows, split_out=t)
        compute += cost.forward(spec, row, rows, split_in=t) + cost.backward(spec, row, rows, split_in=t)
        comm += costs.allreduce_seconds(rows * spec.widths[row + 1] * spec.dtype_bytes, t, reduce_step)
        if col > 0:
            comm += costs.allreduce_seconds(rows * spec.widths[col] * spec.dtype_bytes, t, reduce_step)
    # each boundary carries the activations forward and their gradient back; in 1F1B's steady
    # state the next micro-batch's activations and an earlier one's gradient cross it at once,
    # in opposite directions of a full-duplex link, so a stage waits for one message time per
    # boundary (they progress only inside MPI calls: not behind its compute)
    if not last:
        comm += ctx.p2p(rows * spec.widths[stage.stop] * spec.dtype_bytes, index)
    if stage.start > 0:
        comm += ctx.p2p(rows * spec.widths[stage.start] * spec.dtype_bytes, index - 1)
    return compute, comm


def _gradient_reduction(ctx: _Context, params: float) -> float:
    layout, nbytes = ctx.layout, params * ctx.spec.dtype_bytes
    if layout.data == 1:
        return 0.0
    span = layout.ranks
    if layout.zero:
        return (costs.reduce_scatter_seconds(nbytes, layout.data, ctx.step_cost("reduce_scatter", span))
                + costs.allgather_seconds(nbytes, layout.data, ctx.step_cost("allgather", span)))
    return costs.allreduce_seconds(nbytes, layout.data, ctx.step_cost("allreduce", span))


def predict_layout(spec: ModelSpec, batch: int, layout: Layout, profile: Profile,
                   bucket_mb: float = DEFAULT_BUCKET_MB) -> Prediction:
    """Predicted step of any layout; ConfigError if the layout cannot run this model."""
    if layout.pipeline == 1 and layout.tensor == 1 and not layout.zero and layout.micro_batches == 1:
        return predict_data_parallel(spec, batch, layout.data, profile, bucket_mb)
    rows = _require_rows(batch, layout)
    stages = partition_stages(spec, layout.pipeline)
    check_tensor_split(spec, stages, layout.tensor)
    ctx = _Context(spec, profile, layout)
    m = layout.micro_batches
    micro_rows = math.ceil(rows / m)
    per_stage = [_stage_micro_batch(ctx, k, s, micro_rows, k == len(stages) - 1) for k, s in enumerate(stages)]
    totals = [compute + comm for compute, comm in per_stage]
    busiest = max(range(len(stages)), key=totals.__getitem__)
    pipeline_s = sum(totals) + (m - 1) * totals[busiest]
    params = max(rank_params(spec, s, layout.tensor) for s in stages)
    reduction = _gradient_reduction(ctx, params)
    shards = layout.data if layout.zero else 1
    update = ctx.cost.update(spec, params / shards)
    compute = m * per_stage[busiest][0] + update
    comm = m * per_stage[busiest][1] + reduction
    step = pipeline_s + reduction + update
    in_flight = [min(m, layout.pipeline - k) for k in range(len(stages))]
    activations = max(activation_bytes(spec, s, micro_rows * n) for s, n in zip(stages, in_flight))
    grad_shard = params / shards * spec.dtype_bytes if layout.zero else 0.0  # ZeRO-2's reduced slice
    memory = state_bytes(spec, params, shards) + grad_shard + activations
    return Prediction(layout, step, compute, comm, max(0.0, step - compute - comm), memory)
