"""Slices of a flat buffer and of an optimizer's state: what a sharded strategy owns.

A sharded strategy (ZeRO, the parameter servers) gives each owner a contiguous slice
[lo, hi) of the flat parameter buffer and a twin of the model's optimizer for that slice
alone (its own state, the model optimizer's hyperparameters at every step); stepping the
slices equals stepping the whole (the optimizers' contract).
"""

from __future__ import annotations

from typing import Any

from mpinn.data.samplers import shard_range


def shard_counts(total: int, parts: int) -> list[int]:
    """Sizes of the ``parts`` contiguous slices of ``total`` elements (the first ones 1 larger)."""
    return [hi - lo for lo, hi in (shard_range(total, part, parts) for part in range(parts))]


def state_slice(state: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """The part [lo, hi) of a whole-model optimizer ``state_dict``."""
    return {**state, "state": {name: array[lo:hi] for name, array in state["state"].items()}}


def state_bytes(optimizer) -> int:
    """Bytes held in the optimizer's state arrays (momenta, running averages)."""
    return sum(array.nbytes for array in optimizer.state.values())


def slice_twin(model_optimizer, lo: int, hi: int):
    """A twin of the model's optimizer for the slice [lo, hi), holding that slice of the state
    the model's optimizer already holds (a model trained before), so a sharded run continues
    it instead of starting afresh."""
    twin = model_optimizer.twin()
    if model_optimizer.steps:
        twin.load_state_dict(state_slice(model_optimizer.state_dict(), lo, hi))
    return twin
