"""An explicit communicator object: the only door to MPI, passed around, never a global."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from mpi4py import MPI


class Communicator:
    """A thin wrapper over an mpi4py communicator, methods named after the MPI calls.

    Buffer methods (``Allreduce``, ``Iallreduce``, ``Bcast``) move numpy arrays in place;
    the lower-case ``*_obj`` twins move small Python objects.
    """

    def __init__(self, mpi_comm: MPI.Comm) -> None:
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        self.is_root = self.rank == 0

    @classmethod
    def world(cls) -> "Communicator":
        return cls(MPI.COMM_WORLD)

    @classmethod
    def local(cls) -> "Communicator":
        """A one-rank communicator (this process alone)."""
        return cls(MPI.COMM_SELF)

    def split(self, color: int, key: int | None = None) -> "Communicator":
        """Sub-communicator of the ranks that pass the same ``color``, ordered by ``key``."""
        return Communicator(self.mpi.Split(color, self.rank if key is None else key))

    def Allreduce(self, buf: np.ndarray, op: MPI.Op = MPI.SUM) -> np.ndarray:
        """Reduce ``buf`` over all ranks, in place; returns ``buf``."""
        if self.size > 1:
            self.mpi.Allreduce(MPI.IN_PLACE, buf, op=op)
        return buf

    def Iallreduce(self, buf: np.ndarray, op: MPI.Op = MPI.SUM) -> MPI.Request:
        """Start an in-place non-blocking reduction of ``buf``; wait on the returned request."""
        return self.mpi.Iallreduce(MPI.IN_PLACE, buf, op=op)

    def Bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        if self.size > 1:
            self.mpi.Bcast(buf, root=root)
        return buf

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.mpi.bcast(obj, root=root) if self.size > 1 else obj

    def allgather_obj(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj) if self.size > 1 else [obj]

    def allreduce_obj(self, obj: Any, op: MPI.Op = MPI.SUM) -> Any:
        return self.mpi.allreduce(obj, op=op) if self.size > 1 else obj

    def barrier(self) -> None:
        self.mpi.Barrier()

    def abort(self, code: int = 1) -> None:
        self.mpi.Abort(code)

    def check_identical(self, array: np.ndarray, what: str) -> None:
        """Raise on every rank unless ``array`` is bitwise identical on all ranks."""
        digest = hashlib.sha256(np.ascontiguousarray(array).view(np.uint8)).hexdigest()
        digests = self.allgather_obj(digest)
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise RuntimeError(f"{what} differ between ranks: ranks {differing} disagree with rank 0")


def waitall(requests: list[MPI.Request]) -> None:
    """Complete every request in the list."""
    MPI.Request.Waitall(requests)
