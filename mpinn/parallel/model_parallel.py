"""Model parallelism on a data x pipeline x tensor process grid: one strategy for all three.

Each rank builds its own part of the model (its pipeline stage, with Dense pairs cut over its
tensor group) as a Sequential over its own flat buffers, stepped by a twin of the model's
optimizer (its own state, the model optimizer's hyperparameters at every step). A step:
this data replica's rows of the global batch run as micro-batches through the stages by the
chosen schedule (point-to-point messages in the pipeline group, Allreduces inside the
tensor-parallel layers). The parts (see :mod:`mpinn.parallel.partitions`): the grid
partition; the bucketed allreduce of the stage's gradients over its data-parallel group
(started from the last micro-batch's backward); the replicated update of the rank's part,
whose clipping sums a norm over the replica's stages and tensor slices (a replicated tensor
counted once) before the twin steps the local buffer.

Deterministic mode composes with the data dimension: the reducer sums each group's gradient
exactly (:mod:`mpinn.parallel.exact`) and every micro-batch is one group, so a fixed pipeline
and tensor layout gives the same bits at any data-parallel degree.

Pure pipeline is the grid 1 x N x 1, pure tensor parallelism 1 x 1 x N; every check of the
input runs on every rank before the first message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.data.samplers import shard_range, shard_ranges
from mpinn.errors import ConfigError
from mpinn.parallel.comm import Communicator
from mpinn.parallel.local_model import build_local_model, describe, measure_block_costs
from mpinn.parallel.exact import exact_if
from mpinn.parallel.partitions import Replicated, aligned_range
from mpinn.parallel.pipeline import PipelineRunner
from mpinn.parallel.reducers import BucketedAllreduce
from mpinn.parallel.strategy import Strategy
from mpinn.parallel.updaters import ReplicatedUpdate
from mpinn.registry.model_parallel import ModelParallelOptions
from mpinn.optim.clipping import TensorRuns
from mpinn.optim.update import GradientClip
from mpinn.layout import (GridShape, inference, make_schedule, parse_grid, plan_local_model,
                          stage_actions)
from mpinn.layout.stages import block_starts


class ModelParallel(Strategy):
    """Data x pipeline x tensor parallelism over ``comm`` (whose size must be the grid's)."""

    def __init__(self, comm: Communicator, grid: GridShape, micro_batches: int | None = None,
                 schedule: str = "1f1b", boundaries: tuple[int, ...] = (), balance: str = "params",
                 bucket_mb: float = 4.0, deterministic: bool = False, group_size: int = 128) -> None:
        """``micro_batches`` per step and data replica: 1 by default; in deterministic mode it
        follows from ``group_size`` (one group a micro-batch), and a given count must agree
        (see ``check_batch``)."""
        grid.check_world(comm.size)
        ModelParallelOptions(micro_batches=micro_batches, schedule=schedule, balance=balance,
                             bucket_mb=bucket_mb)
        self.given_micro_batches = micro_batches
        self.comm, self.grid = comm, grid
        self.micro_batches, self.schedule, self.balance = micro_batches or 1, schedule, balance
        self.boundaries, self.bucket_mb = tuple(boundaries), bucket_mb
        self.deterministic, self.group_size = deterministic, group_size
        self.data_rank, self.stage, self.tensor_rank = grid.coordinates(comm.rank)
        self._groups: tuple[Communicator, Communicator, Communicator] | None = None
        self._schedules: dict[tuple[bool, int], list] = {}

    # ---- set-up ----------------------------------------------------------------------
    def setup(self, model) -> None:
        """Check the model fits the grid (every rank, no messages), then build this rank's part
        from rank 0's parameters and optimizer state."""
        net = model.net
        net.build()
        types, counts, widths = describe(net)
        plan = self._plan(types, counts, widths, costs=None)
        data_comm, pipeline_comm, tensor_comm = self._communicators()
        self.comm.Bcast(net.params)
        if self.balance == "time" and not self.boundaries:
            costs = self.comm.bcast_obj(measure_block_costs(net, block_starts(counts))
                                        if self.comm.is_root else None)
            plan = self._plan(types, counts, widths, costs)
        self.part = build_local_model(net, plan, tensor_comm, model.head)
        optimizer = model.optimizer.twin()
        if model.optimizer.state:
            optimizer.load_state_dict(self._localised(model.optimizer.state_dict()))
        Replicated(data_comm).setup(self.part.model)
        self.reducer = exact_if(self.deterministic, self.group_size,
                                BucketedAllreduce(data_comm, self.bucket_mb))
        self.reducer.setup(self.part.model)
        self.updater = ReplicatedUpdate(data_comm)
        self.updater.setup(self.part.model, optimizer, self._clip(model, pipeline_comm, tensor_comm))
        self.runner = PipelineRunner(self.part.model, pipeline_comm, self.part.in_width,
                                     self.part.out_width, self.part.head)

    def _clip(self, model, pipeline_comm: Communicator, tensor_comm: Communicator) -> GradientClip:
        """Clipping of this part's gradient: its per-tensor squares summed over the tensor group,
        then the pipeline group (one data replica: the whole model), each tensor the tensor
        group replicates (a row-parallel bias, an unsplit layer) divided by its copies."""
        sizes = np.array([p.size for p in model.net.named_params().values()])
        tensor_of = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        held = np.bincount(tensor_of[self.part.index], minlength=len(sizes)).astype(np.float64)
        copies = np.maximum(tensor_comm.Allreduce(held) / sizes, 1.0)
        runs = TensorRuns.of_index(tensor_of, self.part.index, copies)
        return GradientClip(runs, lambda squares: pipeline_comm.Allreduce(tensor_comm.Allreduce(squares)))

    def _plan(self, types, counts, widths, costs):
        return plan_local_model(types, counts, widths, self.grid.pipeline, self.stage, self.grid.tensor,
                                self.tensor_rank, self.boundaries, costs)

    def _communicators(self) -> tuple[Communicator, Communicator, Communicator]:
        """(data, pipeline, tensor) groups through this rank, split once from ``comm``."""
        if self._groups is None:
            d, p, t = self.data_rank, self.stage, self.tensor_rank
            grid = self.grid
            self._groups = (self.comm.split(p * grid.tensor + t, key=d),
                            self.comm.split(grid.size + d * grid.tensor + t, key=p),
                            self.comm.split(2 * grid.size + d * grid.pipeline + p, key=t))
        return self._groups

    def check_batch(self, batch_size: int) -> None:
        """In deterministic mode each micro-batch is one group of ``group_size`` samples, so a
        global batch gives each data replica its whole groups; a given micro_batches must be
        that count on every replica."""
        given = self.given_micro_batches
        if not self.deterministic or given is None:
            return
        groups = -(-batch_size // self.group_size)
        counts = sorted({hi - lo for lo, hi in shard_ranges(groups, self.grid.data)})
        if counts != [given]:
            fix = f"leave option micro_batches unset" + (f" or set it to {counts[0]}" if len(counts) == 1 else "")
            raise ConfigError(
                f"option micro_batches {given} disagrees with option deterministic: each micro-batch is "
                f"one group of option group_size {self.group_size} samples, so a global batch of "
                f"{batch_size} gives {' or '.join(map(str, counts))} per data replica "
                f"({self.grid.data} of them); {fix}")

    # ---- steps -----------------------------------------------------------------------
    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        """Micro-batches = ``micro_batches`` x ``accumulation_steps`` per data replica's rows (in
        deterministic mode: one per group)."""
        lo, hi = aligned_range(len(batch), self.reducer.unit, self.data_rank, self.grid.data)
        rows = batch[lo:hi]
        chunks = self.reducer.chunks(len(rows), self.micro_batches * accumulation_steps)
        tally = self.reducer.accumulate_by(
            self.part.model, lambda hook, after: self._run(x, y, rows, chunks, len(batch), True, hook, after),
            len(chunks), len(batch), self.comm)
        self.updater.step(self.reducer.finish())
        return tally

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        """This data replica's rows through the pipeline, ``batch_size`` rows a micro-batch."""
        lo, hi = shard_range(len(x), self.data_rank, self.grid.data)
        chunks = shard_ranges(hi - lo, min(-(-(hi - lo) // batch_size), hi - lo))
        return self._run(x, y, np.arange(lo, hi), chunks, 0, False)

    def _run(self, x, y, rows: np.ndarray, chunks: list[tuple[int, int]], n_global: int,
             training: bool, on_grads_ready=None, after_backward=None) -> np.ndarray:
        """Rows in micro-batches ``chunks`` (ranges of ``rows``) through the pipeline; the tally
        counted once per data replica (on its last stage, tensor rank 0)."""
        if not chunks:
            return np.zeros(3)
        program = self._program(len(chunks), training)
        tally = self.runner.run(program, x, y, [rows[a:b] for a, b in chunks], n_global, training,
                                on_grads_ready, after_backward, self.reducer.summable)
        return tally if self.tensor_rank == 0 else np.zeros(3)

    def _program(self, count: int, training: bool) -> list:
        """This stage's program of the schedule for ``count`` micro-batches (made once, validated)."""
        key = (training, count)
        if key not in self._schedules:
            schedule = (make_schedule(self.schedule, self.grid.pipeline, count) if training
                        else inference(self.grid.pipeline, count))
            self._schedules[key] = stage_actions(schedule, self.stage)
        return self._schedules[key]

    # ---- state in the one-rank layout --------------------------------------------------
    def _localised(self, optimizer_state: dict[str, Any]) -> dict[str, Any]:
        index = self.part.index
        state = {name: np.asarray(array)[index] for name, array in optimizer_state["state"].items()}
        return {**optimizer_state, "state": state}

    def local_state(self, model) -> tuple[np.ndarray, Any]:
        """This rank's part of the model and its optimizer."""
        return self.part.model.params, self.updater.optimizer

    def full_state(self, model):
        """Rank 0 gathers every part of one data replica and scatters it through the indices."""
        local = self.part.model
        state = self.reducer.with_state(self.updater.optimizer.state_dict())
        mine = (self.part.index, local.params, state) if self.data_rank == 0 else None
        parts = self.comm.gather_obj(mine)
        if not self.comm.is_root:
            return None
        params = np.empty_like(model.params)
        optimizer_state = parts[0][2]
        state = {name: np.empty_like(params) for name in optimizer_state["state"]}
        for index, part_params, part_state in filter(None, parts):
            params[index] = part_params
            for name, array in part_state["state"].items():
                state[name][index] = array
        return params, {**optimizer_state, "state": state}

    def load_full_state(self, model, params: np.ndarray, optimizer_state: dict[str, Any]) -> None:
        optimizer_state = self.reducer.take_state(optimizer_state)
        model.params[...] = params
        model.optimizer.load_state_dict(optimizer_state)
        self.part.model.params[...] = params[self.part.index]
        self.updater.load_state(self._localised(optimizer_state))

    def finish(self, model) -> None:
        """The whole trained model (and optimizer state) into ``model`` on every rank."""
        state = self.full_state(model)
        if state is not None:
            model.params[...] = state[0]
        self.comm.Bcast(model.params)
        model.optimizer.load_state_dict(self.comm.bcast_obj(state[1] if state else None))


def grid_for(strategy: str, size: int, stages: int | None = None, grid: str | None = None) -> GridShape:
    """The grid that the strategy (pipeline, tensor or grid) and the options ``stages`` and
    ``grid`` ask for over ``size`` ranks; ConfigError when they disagree with each other or
    with ``size`` (naming the options; the CLI writes them as flags)."""
    if strategy == "grid":
        if grid is None:
            raise ConfigError("option strategy grid needs option grid, e.g. option grid data=2,pipeline=2")
        shape = parse_grid(grid)
        shape.check_world(size)
        if stages is not None and stages != shape.pipeline:
            raise ConfigError(f"option stages {stages} disagrees with the grid's pipeline={shape.pipeline}; "
                              f"drop option stages or make them equal")
        return shape
    if grid is not None:
        raise ConfigError(f"option grid goes with option strategy grid, not option strategy {strategy}")
    if strategy == "tensor":
        return GridShape(tensor=size)
    if stages is not None and stages != size:
        hint = f", or option grid data={size // stages},pipeline={stages}" if size % stages == 0 else ""
        raise ConfigError(f"{stages} pipeline stages need {stages} ranks but the job has {size}; "
                          f"launch with mpiexec -n {stages}, or give option stages {size}{hint}")
    return GridShape(pipeline=size)
