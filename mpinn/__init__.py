"""mpinn: neural-network training for CPU clusters (numpy math, mpi4py communication)."""

from mpinn.errors import ConfigError

__version__ = "0.1.0"

__all__ = ["ConfigError", "__version__"]
