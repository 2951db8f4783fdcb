"""mpinn: neural-network training for CPU clusters (numpy math, mpi4py communication).

``import mpinn as tf`` gives ``tf.keras`` and ``tf.distribute``, imported on first use so that
``import mpinn`` stays light.
"""

import importlib

from mpinn.errors import ConfigError, Preempted

__version__ = "0.1.0"

__all__ = ["ConfigError", "Preempted", "__version__"]

_LAZY = ("keras", "distribute", "callbacks")


def __getattr__(name: str):
    """``mpinn.keras``, ``mpinn.distribute`` and ``mpinn.callbacks``, imported when first used."""
    if name in _LAZY:
        return importlib.import_module(f"mpinn.{name}")
    raise AttributeError(f"module 'mpinn' has no attribute {name!r}")
