"""Everything that talks MPI: communicators and the strategies that decide what is exchanged."""

from mpinn.parallel.async_ps import AsyncParameterServer
from mpinn.parallel.comm import Communicator
from mpinn.parallel.data_parallel import DataParallel
from mpinn.parallel.failures import install_abort_hook
from mpinn.parallel.local_model import tensor_parallel
from mpinn.parallel.local_sgd import LocalSGD
from mpinn.parallel.model_parallel import ModelParallel
from mpinn.parallel.strategy import Strategy
from mpinn.parallel.tensor import ColumnParallelDense, RowParallelDense
from mpinn.parallel.zero import ZeroDataParallel


def default_strategy() -> DataParallel:
    """Data parallelism over every rank of the launch (one rank without a launcher)."""
    comm = Communicator.world()
    if comm.size > 1:
        install_abort_hook(comm)
    return DataParallel(comm)


__all__ = ["Communicator", "DataParallel", "default_strategy", "install_abort_hook", "Strategy",
           "ColumnParallelDense", "ModelParallel", "RowParallelDense", "tensor_parallel",
           "AsyncParameterServer", "LocalSGD", "ZeroDataParallel"]
