"""Model parallelism: pipeline stages, tensor slices, or a data x pipeline x tensor grid of them."""

from dataclasses import dataclass
from typing import Optional

from mpinn.errors import require_positive_int
from mpinn.registry import option, register
from mpinn.registry.data import DataOptions

SCHEDULES = ("1f1b", "gpipe")
BALANCES = ("params", "time")


@dataclass(frozen=True)
class ModelParallelOptions(DataOptions):
    stages: Optional[int] = option(None, "pipeline stages (default: every rank of the pipeline)",
                                   check=require_positive_int)
    micro_batches: Optional[int] = option(None, "micro-batches per step and data replica "
                                          "(default 1; deterministic mode: one per group)",
                                          check=require_positive_int)
    schedule: str = option("1f1b", "pipeline schedule: 1f1b (default, bounded activations) or gpipe",
                           choices=SCHEDULES)
    boundaries: tuple = option((), "layer index where each later pipeline stage starts, e.g. 2,4 "
                               "(default: balanced)")
    balance: str = option("params", "balance pipeline stages by params (default) or measured time",
                          choices=BALANCES)
    grid: Optional[str] = option(None, "data x pipeline x tensor grid, e.g. data=2,pipeline=2 "
                                 "(implies option strategy grid)")


register("pipeline", ModelParallelOptions, "mpinn.parallel.builders:pipeline",
         "pipeline parallelism: consecutive layers per rank, micro-batches by a schedule", planned=True)
register("tensor", ModelParallelOptions, "mpinn.parallel.builders:tensor",
         "tensor parallelism: Dense pairs cut into column and row slices", planned=True)
register("grid", ModelParallelOptions, "mpinn.parallel.builders:grid",
         "a data x pipeline x tensor grid (the option grid gives its shape)", planned=True)
