"""mpinn: neural-network training for CPU clusters (numpy math, mpi4py communication).

``import mpinn as tf`` gives ``tf.keras`` and ``tf.distribute``, imported on first use so that
``import mpinn`` stays light.
"""

import importlib

from mpinn.errors import ConfigError, Diverged, Preempted, UnsupportedFeature

__version__ = "0.1.0"

__all__ = ["ConfigError", "Diverged", "Preempted", "__version__"]

_LAZY = ("keras", "distribute", "callbacks", "data")
TENSORFLOW_ONLY = {  # what a port written for ``import tensorflow as tf`` reaches for next
    "random": "runs are seeded per model: Sequential(seed=...) (seed 0 by default)",
    "GradientTape": "train with model.fit; custom training loops are not part of mpinn.keras "
                    "(the low-level API is mpinn.nn's forward/backward)",
    "function": "there is no graph compilation; code runs as numpy",
    "config": "threads are one BLAS thread per rank (OPENBLAS_NUM_THREADS=1); ranks come from mpiexec",
    "constant": "tensors are numpy arrays", "Variable": "tensors are numpy arrays",
}


def __getattr__(name: str):
    """``mpinn.keras``, ``mpinn.distribute``, ``mpinn.callbacks`` and ``mpinn.data`` (``tf.data``
    in a port), imported when first used; TensorFlow names a port may use say what to do."""
    if name in _LAZY:
        return importlib.import_module(f"mpinn.{name}")
    if name in TENSORFLOW_ONLY:
        raise UnsupportedFeature(f"tf.{name}", TENSORFLOW_ONLY[name])
    raise AttributeError(f"module 'mpinn' has no attribute {name!r}")
