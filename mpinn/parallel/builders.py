"""The registry's entry points for mpinn's own strategies: ``builder(comm, options)``.

Each turns a strategy's options (see :mod:`mpinn.registry`) into the strategy over ``comm``;
the options were checked when they were made.
"""

from __future__ import annotations

from mpinn.parallel.async_ps import AsyncParameterServer
from mpinn.parallel.comm import Communicator
from mpinn.parallel.data_parallel import DataParallel
from mpinn.parallel.local_sgd import LocalSGD
from mpinn.parallel.model_parallel import ModelParallel, grid_for
from mpinn.parallel.zero import ZeroDataParallel


def data_parallel(comm: Communicator, options) -> DataParallel:
    return DataParallel(comm, bucket_mb=options.bucket_mb, deterministic=options.deterministic,
                        group_size=options.group_size)


def zero(comm: Communicator, options) -> ZeroDataParallel:
    return ZeroDataParallel(comm, stage=options.zero_stage, bucket_mb=options.bucket_mb,
                            deterministic=options.deterministic, group_size=options.group_size)


def parameter_server(comm: Communicator, options) -> AsyncParameterServer:
    return AsyncParameterServer(comm, staleness=options.staleness, servers=options.servers)


def local_sgd(comm: Communicator, options) -> LocalSGD:
    return LocalSGD(comm, sync_every=options.sync_every)


def _model_parallel(strategy: str, comm: Communicator, options) -> ModelParallel:
    grid = grid_for(strategy, comm.size, options.stages, options.grid)
    return ModelParallel(comm, grid, options.micro_batches, options.schedule, options.boundaries,
                         options.balance, options.bucket_mb, options.deterministic, options.group_size)


def pipeline(comm: Communicator, options) -> ModelParallel:
    return _model_parallel("pipeline", comm, options)


def tensor(comm: Communicator, options) -> ModelParallel:
    return _model_parallel("tensor", comm, options)


def grid(comm: Communicator, options) -> ModelParallel:
    return _model_parallel("grid", comm, options)
