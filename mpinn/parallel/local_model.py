"""A rank's own part of a model: a Sequential over its OWN flat buffers, and the map back.

``build_local_model`` turns a :class:`~mpinn.layout.LocalPlan` (which layers, which slices) into
a Sequential of fresh layers whose flat ``params`` are ``model.params[index]``. ``index`` is
the whole story of the layout: the same gather localises optimizer state, and scattering
every rank's local arrays back through their indices rebuilds the one-rank layout.
"""

from __future__ import annotations

import copy
import time
from typing import NamedTuple

import numpy as np

from mpinn.nn import Head, Sequential
from mpinn.nn.layers import layer_from_config
from mpinn.parallel.comm import Communicator
from mpinn.parallel.tensor import ColumnParallelDense, RowParallelDense
from mpinn.layout import LocalPlan, plan_local_model
from mpinn.layout.stages import COLUMN, ROW, WHOLE, SlicedLayer


class LocalModel(NamedTuple):
    model: Sequential
    index: np.ndarray  # local params == whole params[index]
    in_width: int
    out_width: int
    head: Head | None = None  # the training head, on the part holding the model's last layer


def describe(model: Sequential) -> tuple[list[str], list[int], list[int]]:
    """(layer type names, parameter counts, widths) of a built model: what plans are made of."""
    types = [type(layer).__name__ for layer in model.layers]
    counts = [sum(int(np.prod(s)) for s in layer.param_shapes().values()) for layer in model.layers]
    widths = [model.input_dim]
    for layer in model.layers:
        widths.append(getattr(layer, "units", widths[-1]))
    return types, counts, widths


def _make_layer(model: Sequential, sliced: SlicedLayer, comm: Communicator):
    layer = model.layers[sliced.index]
    if sliced.split == WHOLE:
        return layer_from_config(layer.get_config())
    options = {"use_bias": layer.use_bias, "kernel_initializer": layer.kernel_initializer}
    if sliced.split == COLUMN:
        return ColumnParallelDense(sliced.hi - sliced.lo, comm, **options)
    return RowParallelDense(layer.units, comm, **options)


def _local_index(model: Sequential, layers: list[SlicedLayer]) -> np.ndarray:
    """Positions in the whole flat buffer of each local parameter, in local order."""
    parts = []
    for sliced in layers:
        offset = model.layer_offsets[sliced.index]
        for name, shape in model.layers[sliced.index].param_shapes().items():
            block = np.arange(offset, offset + int(np.prod(shape))).reshape(shape)
            offset += block.size
            if sliced.split == COLUMN:
                block = block[..., sliced.lo:sliced.hi]
            elif sliced.split == ROW and name == "W":
                block = block[sliced.lo:sliced.hi]
            parts.append(block.ravel())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)


def build_local_model(model: Sequential, plan: LocalPlan, tensor_comm: Communicator,
                      head: Head | None = None) -> LocalModel:
    """The Sequential of ``plan``'s layers, holding its part of ``model``'s parameters; the
    stage holding the model's last layer also gets the training ``head``, cut to its layers."""
    _, _, widths = describe(model)
    local = Sequential([_make_layer(model, s, tensor_comm) for s in plan.layers], seed=model.seed,
                       dtype=model.dtype)
    local.build(widths[plan.start])
    index = _local_index(model, plan.layers)
    local.params[...] = model.params[index]
    if plan.stop == len(model.layers) and head is not None:
        head = Head(head.stop - plan.start, copy.copy(head.loss), head.threshold)
    else:
        head = None
    return LocalModel(local, index, widths[plan.start], widths[plan.stop], head)


def tensor_parallel(model: Sequential, comm: Communicator) -> Sequential:
    """This rank's part of ``model`` with every Dense pair cut over ``comm`` (ConfigError,
    before any communication, when a hidden width is not divisible by ``comm.size``)."""
    plan = plan_local_model(*describe(model), stages=1, stage=0, tensor=comm.size,
                            tensor_rank=comm.rank)
    return build_local_model(model, plan, comm).model


def measure_block_costs(model: Sequential, starts: list[int], rows: int = 64,
                        repeats: int = 3) -> list[float]:
    """Seconds of one forward and backward of each block (layers from one start to the next)
    on a random batch, best of ``repeats``: the costs for balancing stages by measured time."""
    ends = starts[1:] + [len(model.layers)]
    _, _, widths = describe(model)
    rng = np.random.default_rng(0)
    costs = []
    for start, stop in zip(starts, ends):
        plan = LocalPlan(start, stop, [SlicedLayer(i) for i in range(start, stop)])
        block = build_local_model(model, plan, Communicator.local()).model
        x = rng.standard_normal((rows, widths[start])).astype(model.dtype)
        costs.append(min(_time_once(block, x) for _ in range(repeats)))
    return costs


def _time_once(block: Sequential, x: np.ndarray) -> float:
    start = time.perf_counter()
    out = block.forward(x, training=True)
    block.backward(np.ones_like(out), need_input_grad=True)
    return time.perf_counter() - start
