"""``tf.keras.utils``: ``to_categorical`` for ports that one-hot their labels."""

from __future__ import annotations

import numpy as np

from mpinn.errors import ConfigError
from mpinn.keras.unsupported import unsupported_names


def to_categorical(y, num_classes: int | None = None, dtype: str = "float32") -> np.ndarray:
    """One-hot rows for integer labels ``y`` (classes 0 .. num_classes - 1), as Keras makes them."""
    labels = np.asarray(y)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) and
                        not np.array_equal(labels, np.round(labels))):
        raise ConfigError("to_categorical needs integer class labels")
    labels = labels.astype(np.int64).reshape(-1)
    classes = int(labels.max()) + 1 if num_classes is None and labels.size else int(num_classes or 0)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ConfigError(f"labels must lie in [0, {classes}) for num_classes={classes}")
    return np.eye(classes, dtype=dtype)[labels]


__getattr__ = unsupported_names("tf.keras.utils", "mpinn.keras.utils has to_categorical")
