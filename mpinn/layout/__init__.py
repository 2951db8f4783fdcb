"""Layouts as plain data computed without MPI: which rank of a data x pipeline x tensor grid
holds which layers (or slices of them), the pipeline schedule each stage runs, and the gradient
buckets data parallelism reduces. mpinn.parallel executes them and mpinn.plan prices them;
everything here is unit-tested in one process."""

from mpinn.layout.buckets import plan_buckets
from mpinn.layout.grid import GridShape, parse_grid
from mpinn.layout.schedule import (Action, gpipe, inference, make_schedule, one_f_one_b, peak_in_flight,
                                   simulate, stage_actions, validate)
from mpinn.layout.stages import LocalPlan, SlicedLayer, partition_blocks, plan_local_model

__all__ = ["Action", "GridShape", "LocalPlan", "SlicedLayer", "gpipe", "inference", "make_schedule",
           "one_f_one_b", "parse_grid", "partition_blocks", "peak_in_flight", "plan_buckets",
           "plan_local_model",
           "simulate", "stage_actions", "validate"]
