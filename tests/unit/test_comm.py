"""The communicator is the only door to MPI, and the one place communication is timed."""

import ast
from pathlib import Path

import numpy as np

from mpinn.parallel import Communicator, DataParallel

PACKAGE = Path(__file__).resolve().parents[2] / "mpinn"
DOOR = PACKAGE / "parallel" / "comm.py"


def _imports_mpi4py(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "mpi4py" for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mpi4py"


def test_only_the_communicator_imports_mpi4py():
    """Counting imports inside functions. No exception so far: the launcher and the fault
    tooling run before MPI starts (stdlib only) or hold a communicator already."""
    importers = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                       if any(_imports_mpi4py(node) for node in ast.walk(ast.parse(path.read_text()))))
    assert importers == ["parallel/comm.py"]


def test_nothing_reaches_through_to_the_mpi4py_communicator():
    reaching = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
                if path != DOOR for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Attribute) and node.attr == "mpi"]
    assert reaching == []


def test_every_call_is_timed_once_for_the_communicator_and_its_splits():
    comm = Communicator.local()
    part = comm.split(0)
    before = comm.seconds
    comm.Allreduce(np.ones(4))
    after_one = comm.seconds
    assert after_one > before
    comm.Waitall([part.Iallreduce(np.ones(4))])
    assert comm.seconds > after_one and part.seconds == comm.seconds
    assert Communicator.local().seconds == 0.0


def test_a_strategy_reads_its_communication_time_from_its_communicator():
    comm = Communicator.local()
    strategy = DataParallel(comm)
    comm.barrier()
    assert strategy.comm_seconds == comm.seconds > 0


def test_reductions_and_requests_by_name():
    comm = Communicator.local()
    assert comm.Allreduce(np.array([3.0]), "max")[0] == 3.0
    assert comm.allreduce_obj(5, "min") == 5
    request = comm.Iallreduce(np.ones(2))
    assert comm.Testall([request]) and comm.Test(comm.NULL_REQUEST)
