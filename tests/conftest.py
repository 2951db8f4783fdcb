"""Shared test set-up. Under mpiexec, a test failing on one rank aborts the whole job, so the
other ranks can never hang in a collective the failing rank will not reach."""

import os
import sys
import tempfile

import pytest

from mpinn.launcher import launch_rank

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _world_size() -> int:
    if "mpi4py.MPI" not in sys.modules:
        return 1
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size()


def pytest_configure(config):
    """Under a launcher every rank gets its own temporary base folder: ranks that shared one
    would race to clean up each other's old runs. (Tests that share a file across ranks
    broadcast rank 0's path.)"""
    rank = launch_rank()
    if rank is not None and not config.option.basetemp:
        config.option.basetemp = os.path.join(tempfile.gettempdir(), f"mpinn-pytest-rank{rank}")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.failed and _world_size() > 1:
        from mpinn.parallel import Communicator

        world = Communicator.world()
        sys.stderr.write(f"\n[rank {world.rank}] {report.nodeid} failed:\n{report.longreprtext}\n"
                         f"[rank {world.rank}] aborting the MPI job\n")
        sys.stderr.flush()
        world.abort(1)


@pytest.fixture
def comm():
    from mpinn.parallel import Communicator

    return Communicator.world()
