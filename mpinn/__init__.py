"""mpinn: neural-network training for CPU clusters (numpy math, mpi4py communication)."""

from mpinn.errors import ConfigError, Preempted

__version__ = "0.1.0"

__all__ = ["ConfigError", "Preempted", "__version__"]
