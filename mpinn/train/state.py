"""The whole model's state under any strategy: what callbacks keep and put back mid-training.

A strategy may hold only a shard of the optimizer (ZeRO), a pipeline stage or a tensor slice,
so ``model.params`` on one rank is not always the model. ``take_state`` gathers the state as
one rank training alone would hold it (the checkpoint layout, through the strategy's
``full_state``); ``restore_state`` gives every rank its part of it again. Both are collective:
every rank of the strategy calls them at the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelState:
    """The whole model's flat parameters and its optimizer's ``state_dict`` in the same layout."""

    params: np.ndarray
    optimizer_state: dict[str, Any]


def take_state(model, strategy) -> ModelState | None:
    """Collective: the whole state on rank 0 of ``strategy.comm``, None on the other ranks."""
    state = strategy.full_state(model)
    return None if state is None else ModelState(state[0].copy(), state[1])


def restore_state(model, strategy, state: ModelState | None, weights_only: bool = False) -> None:
    """Collective: every rank takes its part of rank 0's ``state`` (other ranks pass None).

    ``weights_only`` puts back the parameters and keeps the optimizer as it is now (its moments
    and its learning rate), as Keras' ``restore_best_weights`` does.
    """
    if weights_only:
        current = take_state(model, strategy)
        if current is not None:
            state = ModelState(state.params, current.optimizer_state)
    state = strategy.comm.bcast_obj(state)
    strategy.load_full_state(model, state.params, state.optimizer_state)
    model.params[...] = state.params  # also right after ``finish``, when params are the model
