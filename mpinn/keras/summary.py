"""``model.summary()``: Keras' table of layers, output shapes and parameter counts.

Under a model-parallel strategy (pipeline stages, tensor slices) the table also lists what
each rank holds; gathering that is collective, so there every rank calls ``summary``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WIDTHS = (34, 22, 12)


def _row(cells: tuple[str, str, str]) -> str:
    return " " + cells[0].ljust(WIDTHS[0]) + cells[1].ljust(WIDTHS[1]) + cells[2].rjust(WIDTHS[2])


def _size(count: int, itemsize: int) -> str:
    size, unit = float(count * itemsize), "B"
    for bigger in ("KB", "MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{count:,} ({size:.2f} {unit})"


def layer_rows(net) -> list[tuple[str, str, str]]:
    """(name (type), output shape, parameter count) for each layer of ``net``, named as Keras does."""
    rows, seen, width = [], {}, net.input_dim
    for layer in net.layers:
        kind = type(layer).__name__
        base = kind.lower() if kind != "Layer" else "identity"
        name = base if base not in seen else f"{base}_{seen[base]}"
        seen[base] = seen.get(base, 0) + 1
        width = getattr(layer, "units", width)
        count = sum(int(np.prod(shape)) for shape in layer.param_shapes().values())
        rows.append((f"{name} ({kind})", f"(None, {width})", f"{count:,}"))
    return rows


def rank_lines(strategy: Any, total: int) -> list[str]:
    """What each rank of a model-parallel strategy holds (collective: gathers one line each)."""
    part = getattr(strategy, "part", None)
    if part is None:
        return []
    mine = (f" rank {strategy.comm.rank}: pipeline stage {strategy.stage}, tensor slice "
            f"{strategy.tensor_rank}, data replica {strategy.data_rank}: "
            f"{part.index.size:,} of {total:,} parameters")
    lines = strategy.comm.gather_obj(mine)
    return ["Parameters held by each rank:", *lines] if lines else []


def summary_lines(model, strategy: Any = None) -> list[str]:
    """The table; the model is built first (its input width must be known)."""
    model.build()
    rule = "_" * (sum(WIDTHS) + 1)
    total = model.params.size
    lines = [f'Model: "{model.name}"', rule,
             _row(("Layer (type)", "Output Shape", "Param #")), "=" * len(rule)]
    lines += [_row(row) for row in layer_rows(model.net)]
    itemsize = model.net.dtype.itemsize
    lines += ["=" * len(rule), f" Total params: {_size(total, itemsize)}",
              f" Trainable params: {_size(total, itemsize)}",
              f" Non-trainable params: {_size(0, itemsize)}", rule]
    return lines + rank_lines(strategy, total)
