"""Per-batch tallies (loss sum, correct count, sample count) that add up across ranks."""

from __future__ import annotations

import numpy as np


def count_correct(out: np.ndarray, target: np.ndarray, threshold: float) -> int:
    """Correct predictions in a batch: argmax for several outputs, ``out > threshold`` for one."""
    target = np.asarray(target)
    if out.shape[1] == 1:
        return int(np.count_nonzero((out[:, 0] > threshold) == (target.reshape(len(out)) > 0.5)))
    labels = target.argmax(axis=1) if target.ndim == 2 else target
    return int(np.count_nonzero(out.argmax(axis=1) == labels))


def summarize(tally: np.ndarray) -> tuple[float, float]:
    """(mean loss, accuracy) from a reduced [loss_sum, correct, count] tally."""
    count = max(tally[2], 1.0)
    return float(tally[0] / count), float(tally[1] / count)
