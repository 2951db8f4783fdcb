"""Under the real launcher (MPICH's or Open MPI's mpiexec, at 1-4 ranks), the rank and size read
from its variables before MPI starts are the ones MPI gives."""

import pytest

from mpinn.launcher import launch_rank, launch_size

pytestmark = pytest.mark.mpi


def test_the_launchers_variables_give_the_mpi_rank_and_size(comm):
    assert (launch_rank(), launch_size()) == (comm.rank, comm.size)
