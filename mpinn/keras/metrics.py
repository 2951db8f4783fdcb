"""Keras' metric names: every accuracy flavour is mpinn's accuracy (argmax for several
outputs, a threshold for one), logged as ``accuracy`` and ``val_accuracy``."""

from __future__ import annotations

from mpinn.errors import UnsupportedFeature
from mpinn.keras.unsupported import unsupported_names

SUPPORTED = ("mpinn reports the loss and accuracy: metrics=['accuracy'] (also 'acc', "
             "'binary_accuracy', 'categorical_accuracy', 'sparse_categorical_accuracy')")
ACCURACY_NAMES = ("accuracy", "acc", "binary_accuracy", "categorical_accuracy",
                  "sparse_categorical_accuracy")


class Accuracy:
    """``metrics=[Accuracy()]`` is ``metrics=['accuracy']``."""

    name = "accuracy"


BinaryAccuracy = CategoricalAccuracy = SparseCategoricalAccuracy = Accuracy


def names(metrics: list | tuple | None) -> list[str]:
    """The metrics compile records: ['accuracy'] or []."""
    found = []
    for metric in metrics or ():
        if isinstance(metric, Accuracy) or metric in ACCURACY_NAMES:
            found = ["accuracy"]
        else:
            raise UnsupportedFeature(f"metric {getattr(metric, 'name', metric)!r}", SUPPORTED)
    return found


__getattr__ = unsupported_names("tf.keras.metrics", SUPPORTED)
