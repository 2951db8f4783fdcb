"""Checks on training data, run before any collective so every rank fails alike and early.

Each check raises :class:`~mpinn.errors.ConfigError` naming the offending value and row, so a
bad file is found from the message alone instead of from a NaN loss many steps later.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mpinn.errors import ConfigError

_NUMERIC_KINDS = "biuf"


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (samples, features), got shape {x.shape}; "
                          f"flatten it with {name}.reshape(len({name}), -1)")
    if x.dtype.kind not in _NUMERIC_KINDS:
        raise ConfigError(f"{name} must be numeric (real numbers), got dtype {x.dtype}"
                          + ("; the imaginary part would be dropped" if x.dtype.kind == "c" else ""))
    if 0 in x.shape:
        raise ConfigError(f"{name} is empty (shape {x.shape}); it needs at least one sample "
                          f"and one feature")
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


def check_label_values(y, name: str = "y") -> np.ndarray:
    """``y`` as 1-D whole-number class labels >= 0 (any int or float dtype), or ConfigError."""
    y = _label_vector(y, name)
    if len(y) and y.min() < 0:
        row = int(np.argmax(y < 0))
        raise ConfigError(f"{name} must hold class numbers >= 0: found {int(y[row])} at row {row}")
    return y


def _label_vector(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(f"{name} must be 1-D class indices, got shape {y.shape}; "
                          f"for one-hot labels pass {name}.argmax(axis=1)")
    if y.dtype.kind not in "biuf":
        raise ConfigError(f"{name} must hold whole class numbers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            row = int(np.argmin(whole))
            raise ConfigError(f"{name} must hold whole numbers (class indices): found {y[row]} "
                          f"at row {row}")
    return y


def _check_labels(y: np.ndarray, n_classes: int, name: str = "y") -> None:
    y = _label_vector(y, name)
    outside = (y < 0) | (y >= n_classes)
    if outside.any():
        row = int(np.argmax(outside))
        raise ConfigError(f"{name} must lie in [0, {n_classes}): found {int(y[row])} at "
                          f"row {row}; number the classes from 0 or give the model more outputs")


def class_count(labels: list[np.ndarray], num_classes: int | None = None,
                source: str = "the data") -> int:
    """How many outputs a classifier of these labels needs: K when the labels present are
    exactly 0..K-1 (at least 2), or ``num_classes`` when given and every label is below it.

    A label far above the others (999 among 3 classes, or 2**31) would silently build that
    many outputs, or try to allocate hundreds of GiB: that is refused, naming the counts.
    """
    present = np.unique(np.concatenate([np.asarray(y, np.int64).reshape(-1) for y in labels]))
    if num_classes is not None:
        if len(present) and present[-1] >= num_classes:
            raise ConfigError(f"{source}: label {int(present[-1])} is not below num_classes "
                              f"{num_classes}; give option num_classes {int(present[-1]) + 1} or more")
        return num_classes
    if len(present) and present[-1] != len(present) - 1:
        shown = ", ".join(map(str, present[:5])) + (", ..." if len(present) > 5 else "")
        raise ConfigError(f"{source}: the {len(present)} classes present are labelled {shown} "
                          f"(largest {int(present[-1])}), not 0..{len(present) - 1}; renumber "
                          f"them, or give option num_classes {int(present[-1]) + 1} to train that "
                          f"many outputs")
    return max(2, len(present))


def check_dataset(data) -> None:
    """Every split of a :class:`~mpinn.data.Dataset`, each error naming its split
    (``x_test``, ``y_train``): 2-D real finite features of one width, labels or targets."""
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        check_xy(x, y, data.n_classes, name=f"x_{split}", y_name=f"y_{split}")
    if data.x_test.shape[1] != data.x_train.shape[1]:
        raise ConfigError(f"x_test has {data.x_test.shape[1]} features but x_train has "
                          f"{data.x_train.shape[1]}; both splits need the same width")


def check_xy(x, y, n_classes: int | None = None, name: str = "x", y_name: str = "y") -> None:
    """Raise ConfigError unless ``x`` is finite 2-D numeric data with one target per row.

    With ``n_classes`` (classification) ``y`` must hold integer labels in ``[0, n_classes)``;
    without it (regression) ``y`` must be finite.
    """
    x = _as_2d(x, name)
    y = np.asarray(y)
    if y.ndim == 0 or y.dtype.kind not in _NUMERIC_KINDS:
        raise ConfigError(f"{y_name} must be a real numeric array with one target per row of "
                          f"{name}, got {y.dtype} of shape {y.shape}")
    if len(y) != len(x):
        raise ConfigError(f"{name} has {len(x)} samples but {y_name} has {len(y)}; "
                          f"they must have the same length")
    _check_finite(x, name)
    if n_classes is None:
        _check_finite(y, y_name)
    else:
        _check_labels(y, n_classes, y_name)


def check_features(x, expected: int, name: str = "x") -> None:
    """Raise ConfigError unless ``x`` is finite 2-D data with ``expected`` columns (the
    model's input)."""
    x = _as_2d(x, name)
    if x.shape[1] != expected:
        raise ConfigError(f"{name} has {x.shape[1]} features but the model expects {expected}")
    _check_finite(x, name)


def check_steps(samples: int, batch_size: int, drop_last: bool) -> None:
    """ConfigError when dropping the last partial batch would leave no step at all."""
    if drop_last and batch_size > samples:
        raise ConfigError(f"batch_size {batch_size} is larger than the {samples} training samples "
                          f"and drop_last is set: no step would run; use a smaller batch")


def fingerprint(a, rows: int = 4) -> tuple:
    """Cheap facts that tell two arrays apart: shape, dtype, the float64 sum and a digest of
    a few evenly spaced rows. Equal arrays give equal fingerprints on any rank."""
    a = np.asarray(a)
    total = sum(float(block.sum(dtype=np.float64)) for _, block in _row_blocks(a)) if a.ndim else float(a)
    picks = np.linspace(0, len(a) - 1, num=min(rows, len(a))).astype(int) if a.ndim and len(a) else []
    sample = hashlib.sha256(b"".join(np.ascontiguousarray(a[i]).tobytes() for i in picks)).hexdigest()[:16]
    return (f"shape {a.shape}", f"dtype {a.dtype}", f"sum {total!r}", f"rows {sample}")
