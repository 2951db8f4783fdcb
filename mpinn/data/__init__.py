"""Data for mpinn: built-in sets, MNIST-format files and input checks (no MPI here).

Every loader is a pure function of its arguments, so each rank builds identical arrays and
takes its shard later (``mpinn.data.samplers``) without any communication.
"""

from mpinn.data.datasets import (
    DATASETS,
    Dataset,
    digits,
    load_dataset,
    make_classification,
    make_regression,
    xor,
)
from mpinn.data.mnist import load_idx, load_mnist
from mpinn.data.validate import check_features, check_xy

__all__ = [
    "DATASETS", "Dataset", "check_features", "check_xy", "digits", "load_dataset",
    "load_idx", "load_mnist", "make_classification", "make_regression", "xor",
]
