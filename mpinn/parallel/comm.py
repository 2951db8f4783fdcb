"""An explicit communicator object: the only door to MPI, passed around, never a global.

Every MPI call of the package goes through a :class:`Communicator` method: collectives,
point-to-point messages, the requests they return (wait, test, cancel) and the reduction
ops (named: ``"sum"``, ``"max"``, ``"min"``). Each call adds its wall time to one counter
shared with the communicator's splits (``seconds``): a strategy's time in communication is
read there, never timed by hand.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

# Under Open MPI's fault tolerance (mpiexec --with-ft ulfm sets OMPI_MCA_mpi_ft_enable in every
# rank), the fence MPI_Finalize holds with every rank of the job can wait forever once ranks died
# (here one survivor in two hung after three deaths): skip it, as ULFM's users do. Open MPI reads
# the parameter when MPI starts, at this import.
if "OMPI_MCA_mpi_ft_enable" in os.environ:
    os.environ.setdefault("OMPI_MCA_async_mpi_finalize", "1")
from mpi4py import MPI  # noqa: E402

from mpinn.errors import RankLost
from mpinn.parallel.heartbeat import Heartbeat
from mpinn.parallel.watchdog import Watchdog

Method = TypeVar("Method", bound=Callable[..., Any])
Request = MPI.Request
OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
OBJECT_OPS = {"sum": operator.add, "max": max, "min": min}  # allreduce_obj's, on Python numbers
ABORT_GRACE_SECONDS = 0.5
RUN_DIR_VARIABLE = "MPINN_RUN_DIR"
# What a survivor's call returns under fault tolerance when a rank died: the failure itself,
# the communicator revoked by a survivor that saw it, or a completed request list holding one.
FAILURE_CLASSES = (MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED,
                   MPI.ERR_IN_STATUS)


def _mpi_call(blocking: bool) -> Callable[[Method], Method]:
    """Decorates a communicator method that calls MPI: its wall time is added to the shared
    ``seconds``; it is noted in the heartbeat record (if any); a blocking one runs under the
    watchdog (if any); an MPI error reporting a dead rank raises RankLost (see ``failure``)."""
    def decorate(method: Method) -> Method:
        name = method.__name__.encode()

        @functools.wraps(method)
        def wrapper(self: "Communicator", *args: Any, **kwargs: Any) -> Any:
            shared = self.shared
            beat, dog = shared.heartbeat, shared.watchdog if blocking else None
            start = time.perf_counter()
            try:
                if beat is not None:
                    beat.enter(name, blocking)
                if dog is None:
                    return method(self, *args, **kwargs)
                with dog.watch(method.__name__):
                    return method(self, *args, **kwargs)
            except MPI.Exception as exc:
                raise self.failure(exc) from exc
            finally:
                if beat is not None and blocking:
                    beat.leave()
                shared.seconds += time.perf_counter() - start
        return wrapper  # type: ignore[return-value]
    return decorate


watched = _mpi_call(blocking=True)
noted = _mpi_call(blocking=False)


class _Shared:
    """What a communicator shares with its splits: the watchdog, the heartbeat record, the
    seconds spent in MPI calls and the MPI communicators themselves (under fault tolerance
    every one must return errors, and a run that stops on a death revokes them all)."""

    def __init__(self, watchdog: Watchdog | None = None) -> None:
        self.watchdog = watchdog
        self.comms: list[MPI.Comm] = []
        self.heartbeat: Heartbeat | None = None
        self.seconds = 0.0
        self.tolerant = False  # a dead rank raises RankLost instead of ending the job
        self.step = 0  # the training step running (see note_step)


class Communicator:
    """A thin wrapper over an mpi4py communicator, methods named after the MPI calls.

    Buffer methods (``Allreduce``, ``Iallreduce``, ``Bcast``) move numpy arrays in place;
    the lower-case ``*_obj`` twins move small Python objects. Non-blocking methods return a
    request, completed through ``Waitall``, ``Waitany``, ``Test``, ``Testall`` or ``Cancel``.
    """

    NULL_REQUEST = MPI.REQUEST_NULL  # an inactive request: Waitany skips it

    def __init__(self, mpi_comm: MPI.Comm, watchdog: Watchdog | None = None,
                 shared: _Shared | None = None) -> None:
        self.shared = shared or _Shared(watchdog)
        self._use(mpi_comm)

    def _use(self, mpi_comm: MPI.Comm) -> None:
        self.mpi = mpi_comm
        self.shared.comms.append(mpi_comm)
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        self.is_root = self.rank == 0
        self._padded: np.ndarray | None = None  # Allgatherv's scratch for unequal blocks

    @property
    def seconds(self) -> float:
        """Wall seconds spent in this communicator's (and its splits') MPI calls so far."""
        return self.shared.seconds

    @property
    def watchdog(self) -> Watchdog | None:
        return self.shared.watchdog

    @watchdog.setter
    def watchdog(self, watchdog: Watchdog | None) -> None:
        self.shared.watchdog = watchdog

    @classmethod
    def world(cls, watchdog_seconds: float | None = None) -> "Communicator":
        """COMM_WORLD; with ``watchdog_seconds``, a blocking call stuck that long aborts the job."""
        comm = cls(MPI.COMM_WORLD)
        if watchdog_seconds:
            comm.watchdog = Watchdog(watchdog_seconds, comm.rank, comm.abort)
        return comm

    @contextmanager
    def watching(self, seconds: float | None, run_dir: str | Path | None = None) -> Iterator[None]:
        """Within the block (collective to enter), a blocking call stuck ``seconds`` aborts
        the job after the lowest responding rank reports where every rank is, from heartbeat
        records in ``run_dir`` (or ``$MPINN_RUN_DIR``, or a temporary folder for the job).
        Nothing changes on one rank, with ``seconds`` 0 or None, or under a watchdog already."""
        if self.size == 1 or not seconds or self.watchdog is not None:
            yield
            return
        folder, temporary = self.bcast_obj(_heartbeat_folder(run_dir) if self.is_root else None)
        group = ""
        if self.size < MPI.COMM_WORLD.Get_size():  # a group (a sweep's) has records of its own
            group = f"g{self.bcast_obj(MPI.COMM_WORLD.Get_rank())}-"
        heartbeat = Heartbeat(folder, self.rank, self.size, group)
        self.shared.heartbeat = heartbeat
        self.watchdog = Watchdog(seconds, self.rank, self.abort, heartbeat)
        try:
            yield
        finally:
            self.watchdog.stop()
            self.watchdog = self.shared.heartbeat = None
            heartbeat.close()
            if self.is_root and temporary:
                shutil.rmtree(temporary, ignore_errors=True)

    # ---- fault tolerance (ULFM): see mpinn.train.recovery ------------------------------
    def tolerate_failures(self) -> None:
        """From now on a rank's death raises :class:`~mpinn.errors.RankLost` on the survivors
        (at their next call on this communicator) instead of ending the job. Needs an MPI with
        fault tolerance enabled for this run (Open MPI 5's ``mpiexec --with-ft ulfm``). So do
        the communicators split from this one, before or after."""
        for mpi_comm in self.shared.comms:
            mpi_comm.Set_errhandler(MPI.ERRORS_RETURN)
        self.shared.tolerant = True

    def revoke_all(self) -> None:
        """Revoke this communicator and every one split from it: each survivor's pending and
        next calls on any of them fail, so that none waits for ever on a live peer that is
        itself waiting on the dead (point-to-point chains, a grid's sub-communicators)."""
        for mpi_comm in self.shared.comms:
            mpi_comm.Revoke()

    def failure(self, exc: MPI.Exception) -> Exception:
        """What an MPI error raised in a call becomes: RankLost, naming the dead ranks as the
        job (COMM_WORLD) numbers them, where it reports a failure under fault tolerance."""
        if not self.shared.tolerant or exc.Get_error_class() not in FAILURE_CLASSES:
            return exc
        return RankLost(self.failed_ranks(), f"{exc.Get_error_string()}: a rank of the job died")

    def world_ranks(self) -> list[int]:
        """The COMM_WORLD rank of each rank of this communicator, in its order."""
        return _world_ranks(self.mpi.Get_group())

    def failed_ranks(self) -> list[int]:
        """The ranks of this communicator this rank knows to be dead, as COMM_WORLD numbers them."""
        return _world_ranks(self.mpi.Get_failed())

    def shrink(self) -> list[int]:
        """After RankLost, on every survivor: revoke this communicator (so every survivor's
        pending call fails too), shrink it to the survivors and use that from now on, in this
        very object, so everything holding it goes on with it. Returns the ranks (in
        COMM_WORLD) that the shrink left out."""
        before = _world_ranks(self.mpi.Get_group())
        self.mpi.Revoke()
        survivors = self.mpi.Shrink()
        survivors.Set_errhandler(MPI.ERRORS_RETURN)
        self._use(survivors)
        return sorted(set(before) - set(_world_ranks(survivors.Get_group())))

    def ranks_on_node(self) -> int:
        """How many ranks of this communicator share this rank's node (and its memory)."""
        if self.size == 1:
            return 1
        node = self.split_node()
        try:
            return node.size
        finally:
            node.free()

    def split_node(self) -> "Communicator":
        """Sub-communicator of the ranks that share this rank's node (shared memory), in rank
        order; ``free`` it when done."""
        return Communicator(self.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank),
                            shared=self.shared)

    def free(self) -> None:
        """Release a sub-communicator made by ``split`` or ``split_node``."""
        self.shared.comms.remove(self.mpi)
        self.mpi.Free()

    @property
    def step(self) -> int:
        """The training step running, as the loop last noted it."""
        return self.shared.step

    def note_step(self, step: int) -> None:
        """Note which step is running, for the watchdog's report (if any) and ``step``."""
        self.shared.step = step
        if self.watchdog is not None:
            self.watchdog.step = step

    @classmethod
    def local(cls) -> "Communicator":
        """A one-rank communicator (this process alone)."""
        return cls(MPI.COMM_SELF)

    def split(self, color: int, key: int | None = None) -> "Communicator":
        """Sub-communicator of the ranks that pass the same ``color``, ordered by ``key``."""
        return Communicator(self.mpi.Split(color, self.rank if key is None else key),
                            shared=self.shared)

    @watched
    def Allreduce(self, buf: np.ndarray, op: str = "sum") -> np.ndarray:
        """Reduce ``buf`` over all ranks, in place, by ``op`` (sum, max, min); returns ``buf``."""
        if self.size > 1:
            self.mpi.Allreduce(MPI.IN_PLACE, buf, op=OPS[op])
        return buf

    @noted
    def Iallreduce(self, buf: np.ndarray, op: str = "sum") -> Request:
        """Start an in-place non-blocking reduction of ``buf``; wait on the returned request."""
        return self.mpi.Iallreduce(MPI.IN_PLACE, buf, op=OPS[op])

    @noted
    def Isend(self, buf: np.ndarray, dest: int, tag: int) -> Request:
        """Start sending ``buf`` to rank ``dest``; keep ``buf`` alive until the request completes."""
        return self.mpi.Isend(buf, dest=dest, tag=tag)

    @noted
    def Irecv(self, buf: np.ndarray, source: int, tag: int) -> Request:
        """Start receiving into ``buf`` from rank ``source``; wait on the returned request."""
        return self.mpi.Irecv(buf, source=source, tag=tag)

    @watched
    def Send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        self.mpi.Send(buf, dest=dest, tag=tag)

    @watched
    def Recv(self, buf: np.ndarray, source: int, tag: int = 0) -> np.ndarray:
        self.mpi.Recv(buf, source=source, tag=tag)
        return buf

    @watched
    def gather_obj(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every rank's ``obj``, as a list on ``root``; None elsewhere."""
        return self.mpi.gather(obj, root=root) if self.size > 1 else [obj]

    @watched
    def Bcast(self, buf: np.ndarray, root: int = 0) -> np.ndarray:
        if self.size > 1:
            self.mpi.Bcast(buf, root=root)
        return buf

    @watched
    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.mpi.bcast(obj, root=root) if self.size > 1 else obj

    @watched
    def allgather_obj(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj) if self.size > 1 else [obj]

    @watched
    def allreduce_obj(self, obj: Any, op: str = "sum") -> Any:
        """A small Python object (a number) reduced over all ranks by ``op``, in rank order.

        One Allgather on this communicator, then the reduction here: mpi4py's own object
        reduction runs point-to-point on a private duplicate of the communicator, which
        revoking this one does not reach, so under fault tolerance a survivor could wait there
        for ever on a live rank that had left for the shrink (seen: 1 run in 7 under load)."""
        if self.size == 1:
            return obj
        return functools.reduce(OBJECT_OPS[op], self.mpi.allgather(obj))

    @watched
    def barrier(self) -> None:
        self.mpi.Barrier()

    @watched
    def Waitall(self, requests: list[Request]) -> None:
        """Complete every request in the list (non-blocking calls started on this communicator)."""
        MPI.Request.Waitall(requests)

    @watched
    def Waitany(self, requests: list[Request]) -> int:
        """Complete one request of the list and return its index (MPI.UNDEFINED if none is active)."""
        return MPI.Request.Waitany(requests)

    @noted
    def Testall(self, requests: list[Request]) -> bool:
        """Whether every request of the list is complete (completing them if so); a call also
        lets MPI move pending messages along."""
        return MPI.Request.Testall(requests)

    @noted
    def Test(self, request: Request) -> bool:
        """Whether ``request`` is complete (completing it if so)."""
        return request.Test()

    @noted
    def Cancel(self, request: Request) -> None:
        """Cancel a pending request (a receive no message will match); still complete it."""
        request.Cancel()

    @watched
    def Reduce_scatter(self, sendbuf: np.ndarray | None, recvbuf: np.ndarray, counts: list[int],
                       op: str = "sum") -> np.ndarray:
        """Reduce ``sendbuf`` over all ranks; rank r receives block r (``counts[r]`` elements,
        blocks in rank order) in ``recvbuf``, which it returns. With ``sendbuf=None`` the whole
        ``recvbuf`` is the input and this rank's reduced block lands at its start (returned)."""
        if self.size > 1:
            self.mpi.Reduce_scatter(MPI.IN_PLACE if sendbuf is None else sendbuf, recvbuf, counts,
                                    op=OPS[op])
        elif sendbuf is not None:
            recvbuf[...] = sendbuf
        return recvbuf[:counts[self.rank]] if sendbuf is None else recvbuf

    @watched
    def Allgatherv(self, buf: np.ndarray, counts: list[int]) -> np.ndarray:
        """In place: rank r's block of ``buf`` (``counts[r]`` elements, blocks in rank order)
        goes to every rank; returns ``buf``.

        Done as an Allgather of equal blocks: MPICH 5's default MPI_Allgatherv algorithm for
        large buffers (ring) ran 30-40x slower than MPI_Allgather of the same bytes here
        (2.9M floats at 2 ranks: 443 ms against 12 ms). Unequal blocks go through a padded
        scratch buffer, kept for the next call."""
        if self.size == 1:
            return buf
        width = max(counts)
        if all(count == width for count in counts):
            self.mpi.Allgather(MPI.IN_PLACE, buf[:width * self.size])
            return buf
        padded = self._scratch(width * self.size, buf.dtype)
        starts = displacements(counts)
        lo = starts[self.rank]
        padded[self.rank * width:self.rank * width + counts[self.rank]] = buf[lo:lo + counts[self.rank]]
        self.mpi.Allgather(MPI.IN_PLACE, padded)
        for rank, (start, count) in enumerate(zip(starts, counts)):
            buf[start:start + count] = padded[rank * width:rank * width + count]
        return buf

    def _scratch(self, size: int, dtype: np.dtype) -> np.ndarray:
        if self._padded is None or self._padded.size != size or self._padded.dtype != dtype:
            self._padded = np.empty(size, dtype)
        return self._padded

    @watched
    def Gatherv(self, sendbuf: np.ndarray, counts: list[int], root: int = 0) -> np.ndarray | None:
        """Every rank's ``sendbuf`` (``counts[r]`` elements) concatenated in rank order, on
        ``root``; None elsewhere."""
        if self.size == 1:
            return sendbuf.copy()
        recvbuf = np.empty(sum(counts), sendbuf.dtype) if self.rank == root else None
        spec = [recvbuf, (counts, displacements(counts))] if self.rank == root else None
        self.mpi.Gatherv(sendbuf, spec, root=root)
        return recvbuf

    def abort(self, code: int = 1) -> None:
        """End every rank of the job. The launcher forwards a rank's output through a pipe
        and may tear down before draining it, so wait a moment for the last words (a
        traceback, the watchdog's report) to reach the user first."""
        time.sleep(ABORT_GRACE_SECONDS)
        self.mpi.Abort(code)

    def check_identical(self, array: np.ndarray, what: str) -> None:
        """Raise on every rank unless ``array`` is bitwise identical on all ranks."""
        digest = hashlib.sha256(np.ascontiguousarray(array).view(np.uint8)).hexdigest()
        digests = self.allgather_obj(digest)
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise RuntimeError(f"{what} differ between ranks: ranks {differing} disagree with rank 0")


def mpi_versions() -> tuple[str, str]:
    """(the mpi4py version, the MPI library's own one-line version)."""
    from mpi4py import __version__

    return __version__, " ".join(library_version().splitlines()[0].split())


def _heartbeat_folder(run_dir: str | Path | None) -> tuple[str, str | None]:
    """(folder for the heartbeat records, the temporary folder to remove after, if any)."""
    base = run_dir or os.environ.get(RUN_DIR_VARIABLE)
    if base:
        return str(base), None
    temporary = tempfile.mkdtemp(prefix="mpinn-heartbeat-")
    return temporary, temporary


def library_version() -> str:
    """The MPI library's own description of itself (MPI_Get_library_version): its vendor and
    version, e.g. "Open MPI v5.0.11, ..." or "MPICH Version: 5.0.2 ..."."""
    return MPI.Get_library_version().rstrip("\x00\n")


def _world_ranks(group: MPI.Group) -> list[int]:
    """The COMM_WORLD ranks of a group's members (the group is freed)."""
    world = MPI.COMM_WORLD.Get_group()
    try:
        ranks = group.Translate_ranks(list(range(group.Get_size())), world)
    finally:
        group.Free()
        world.Free()
    return [rank for rank in ranks if rank != MPI.UNDEFINED]


def displacements(counts: list[int]) -> list[int]:
    """Offsets of consecutive blocks of the given sizes."""
    return [sum(counts[:r]) for r in range(len(counts))]
