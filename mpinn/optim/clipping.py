"""Gradient clipping with Keras' meanings, as pure numpy over a flat gradient.

- ``clipnorm``: each weight tensor is scaled by c / max(||g_t||, c), its own norm;
- ``global_clipnorm``: every tensor by c / max(||g||, c), the norm of the whole model's gradient;
- ``clipvalue``: every element is clipped to [-c, c].

Optimizers only hold these thresholds (at most one, as in Keras). The clipping runs once per
step on the reduced gradient, before any optimizer copy steps (:func:`mpinn.optim.update.update`).
A rank may hold only part of the model's gradient (a ZeRO shard, a pipeline stage, a tensor
slice, a server's slice): :class:`TensorRuns` says which whole-model tensor each run of its
elements belongs to, and how many ranks hold a copy of it, so that summing its per-tensor
squares over the owners gives the whole model's, each replicated parameter counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np

from mpinn.errors import ConfigError

CLIP_DEFAULTS: dict[str, float | None] = {"clipnorm": None, "global_clipnorm": None, "clipvalue": None}


def check_clipping(owner: str, clipnorm: Any, global_clipnorm: Any, clipvalue: Any) -> None:
    """ConfigError unless each threshold is None or a positive number, and at most one is set."""
    given = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm, "clipvalue": clipvalue}
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
            raise ConfigError(f"{owner}: {name} must be a positive number or None, got {value!r}")
    chosen = [name for name, value in given.items() if value is not None]
    if len(chosen) > 1:
        raise ConfigError(f"{owner}: only one of clipnorm, global_clipnorm and clipvalue can be set, "
                          f"got {' and '.join(chosen)}")


def clips_by_norm(optimizer) -> bool:
    """Whether the optimizer's thresholds need a norm (a reduction over the gradient's owners)."""
    return optimizer.clipnorm is not None or optimizer.global_clipnorm is not None


@dataclass(frozen=True)
class TensorRuns:
    """A gradient held by one rank as runs of whole-model tensors: run k covers local elements
    [starts[k], starts[k+1]) of tensor ``tensors[k]``, a tensor held by ``copies[k]`` ranks of
    the group the norm is summed over (1 unless it is replicated, as a row-parallel bias)."""

    starts: np.ndarray
    tensors: np.ndarray
    copies: np.ndarray
    n_tensors: int

    @classmethod
    def of_slice(cls, sizes: list[int], lo: int, hi: int) -> "TensorRuns":
        """Elements [lo, hi) of a flat buffer holding tensors of ``sizes`` in order."""
        bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        first = int(np.searchsorted(bounds, lo, side="right")) - 1
        last = int(np.searchsorted(bounds, hi, side="left"))
        tensors = np.arange(first, max(first, last))
        tensors = tensors[bounds[tensors + 1] > bounds[tensors]]  # no empty tensor makes a run
        starts = np.maximum(bounds[tensors], lo) - lo
        keep = starts < hi - lo  # an empty slice has no run
        return cls(starts[keep], tensors[keep], np.ones(int(keep.sum())), len(sizes))

    @classmethod
    def of_index(cls, tensor_of: np.ndarray, index: np.ndarray, copies: np.ndarray) -> "TensorRuns":
        """Local elements that are whole elements ``index`` (``tensor_of`` gives the tensor of
        each whole element); ``copies`` is per whole tensor."""
        local = tensor_of[index]
        starts = np.flatnonzero(np.concatenate([[True], local[1:] != local[:-1]])) if local.size else \
            np.zeros(0, np.int64)
        tensors = local[starts]
        return cls(starts, tensors, copies[tensors].astype(np.float64), int(tensor_of.max(initial=-1)) + 1)

    def squares(self, grads: np.ndarray, grid: float | None = None) -> np.ndarray:
        """This rank's share of each whole tensor's sum of squares (float64, one per tensor):
        replicated tensors divided by their copies, so summing over the owners counts them once.
        With ``grid``, each square is first rounded down to a whole multiple of it, so that the
        sums are exact and do not depend on how the elements are split over ranks."""
        total = np.zeros(self.n_tensors)
        if len(self.starts):
            wide = grads.astype(np.float64)
            wide *= wide
            if grid is not None:
                np.floor(np.divide(wide, grid, out=wide), out=wide)
                wide *= grid
            np.add.at(total, self.tensors, np.add.reduceat(wide, self.starts) / self.copies)
        return total

    def scale(self, grads: np.ndarray, factors: np.ndarray) -> None:
        """Multiply each run in place by its tensor's factor."""
        ends = list(self.starts[1:]) + [grads.size]
        for start, end, tensor in zip(self.starts, ends, self.tensors):
            if factors[tensor] != 1:
                grads[start:end] *= grads.dtype.type(factors[tensor])


def exact_grid(largest_square: float, elements: int) -> float:
    """A power of two such that ``elements`` squares no larger than ``largest_square``, each a
    whole multiple of it, sum exactly in float64 (whole numbers below 2**53)."""
    if largest_square <= 0:
        return 1.0
    return 2.0 ** (math.ceil(math.log2(largest_square * max(elements, 1))) - 52)


def clip_factors(optimizer, squares: np.ndarray) -> np.ndarray:
    """Per-tensor factors from the whole model's per-tensor sums of squares (Keras' formulas)."""
    if optimizer.clipnorm is not None:
        norms = np.sqrt(squares)
        return optimizer.clipnorm / np.maximum(norms, optimizer.clipnorm)
    norm = np.sqrt(squares.sum())
    return np.full(len(squares), optimizer.global_clipnorm / max(norm, optimizer.global_clipnorm))


def clip_values(optimizer, grads: np.ndarray) -> None:
    """Element-wise clipping to [-clipvalue, clipvalue], in place (nothing without a clipvalue)."""
    if optimizer.clipvalue is not None:
        np.clip(grads, -optimizer.clipvalue, optimizer.clipvalue, out=grads)
