"""Checks on training data, run before any collective so every rank fails alike and early.

Each check raises :class:`~mpinn.errors.ConfigError` naming the offending value and row, so a
bad file is found from the message alone instead of from a NaN loss many steps later.
"""

from __future__ import annotations

import numpy as np

from mpinn.errors import ConfigError

_NUMERIC_KINDS = "biuf"


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (samples, features), got shape {x.shape}; "
                          f"flatten it with {name}.reshape(len({name}), -1)")
    if x.dtype.kind not in _NUMERIC_KINDS:
        raise ConfigError(f"{name} must be numeric, got dtype {x.dtype}")
    return x


def _row_blocks(a: np.ndarray, elements: int = 1 << 20):
    """Consecutive row blocks of about ``elements`` values: a scan of a memory-mapped array
    never holds more than one block's temporaries."""
    rows = max(1, elements // max(1, int(np.prod(a.shape[1:]))))
    for start in range(0, len(a), rows):
        yield start, np.asarray(a[start:start + rows])


def _first_bad_row(a: np.ndarray) -> int | None:
    for start, block in _row_blocks(a):
        bad = ~np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if bad.any():
            return start + int(np.argmax(bad))
    return None


def _check_finite(a: np.ndarray, name: str) -> None:
    if a.dtype.kind != "f":
        return
    row = _first_bad_row(a)
    if row is None:
        return
    n_nan = sum(int(np.isnan(block).sum()) for _, block in _row_blocks(a))
    n_inf = sum(int(np.isinf(block).sum()) for _, block in _row_blocks(a))
    raise ConfigError(f"{name} contains {n_nan} NaN and {n_inf} Inf values (first in row "
                      f"{row}); remove or impute those rows before training")


def _check_labels(y: np.ndarray, n_classes: int) -> None:
    if y.ndim != 1:
        raise ConfigError(f"labels must be 1-D class indices, got shape {y.shape}; "
                          f"for one-hot labels pass y.argmax(axis=1)")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            row = int(np.argmin(whole))
            raise ConfigError(f"labels must be whole numbers (class indices): found {y[row]} "
                              f"at row {row}")
    outside = (y < 0) | (y >= n_classes)
    if outside.any():
        row = int(np.argmax(outside))
        raise ConfigError(f"labels must lie in [0, {n_classes}): found {int(y[row])} at "
                          f"row {row}; number the classes from 0 or give the model more outputs")


def check_xy(x, y, n_classes: int | None = None, name: str = "x") -> None:
    """Raise ConfigError unless ``x`` is finite 2-D numeric data with one target per row.

    With ``n_classes`` (classification) ``y`` must hold integer labels in ``[0, n_classes)``;
    without it (regression) ``y`` must be finite.
    """
    x = _as_2d(x, name)
    y = np.asarray(y)
    if y.ndim == 0 or y.dtype.kind not in _NUMERIC_KINDS:
        raise ConfigError(f"y must be a numeric array with one target per row of {name}, "
                          f"got {y.dtype} of shape {y.shape}")
    if len(y) != len(x):
        raise ConfigError(f"{name} has {len(x)} samples but y has {len(y)}; "
                          f"they must have the same length")
    _check_finite(x, name)
    if n_classes is None:
        _check_finite(y, "y")
    else:
        _check_labels(y, n_classes)


def check_features(x, expected: int, name: str = "x") -> None:
    """Raise ConfigError unless ``x`` is 2-D with ``expected`` columns (the model's input)."""
    x = _as_2d(x, name)
    if x.shape[1] != expected:
        raise ConfigError(f"{name} has {x.shape[1]} features but the model expects {expected}")
