"""Heartbeat records: where every rank is, readable without asking the rank.

When a collective hangs, the ranks waiting in it cannot ask the missing rank anything: it may
be stopped, deadlocked or busy elsewhere. So each rank keeps a small record in a
memory-mapped file, rewritten on every communicator call (the operation, its sequence
number, the step, whether it is waiting and since when) and refreshed by the watchdog thread
(``alive``: a stopped process stops refreshing). The file is never fsync'd: the page cache
shares it with every process of the node, and on a cluster's shared file system with the
others as well, so a rank's watchdog reads every record it can see and reports who is not at
the collective. Writing a record is one ``struct.pack_into`` on the map (see
``bench/heartbeat.py`` for its cost against a step).
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

# pid, sequence number, step, waiting (0/1), since (wall clock), operation (ASCII)
_CALL = struct.Struct("<qqqqd32s")
_ALIVE = struct.Struct("<d")  # written by the watchdog thread, after the call fields
RECORD_BYTES = _CALL.size + _ALIVE.size
_OPERATION, _OPERATION_BYTES = 40, 32  # byte offset and size of the operation's name
_ALIVE_INDEX = _CALL.size // 8  # as a float64 index
PREFIX = ".mpinn-heartbeat-"


@dataclass(frozen=True)
class Beat:
    """One rank's record as read back."""

    rank: int
    pid: int
    sequence: int
    step: int
    waiting: bool
    since: float
    operation: str
    alive: float


def record_path(folder: str | Path, rank: int, group: str = "") -> Path:
    """A hidden file per rank (and group of ranks), removed when the rank is done."""
    return Path(folder) / f"{PREFIX}{group}{rank}.bin"


class Heartbeat:
    """This rank's record in ``folder`` (created if missing); ``close`` removes it.
    ``group`` tells apart the records of several groups of ranks sharing a folder.

    The fields are written through typed views of the map (a few item assignments per call,
    well under a microsecond), never through ``struct.pack``, which costs several."""

    def __init__(self, folder: str | Path, rank: int, size: int, group: str = "") -> None:
        self.folder, self.rank, self.size, self.group = Path(folder), rank, size, group
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = record_path(self.folder, rank, group)
        with open(self.path, "wb+") as f:
            f.write(b"\0" * RECORD_BYTES)
            f.flush()
            self._map = mmap.mmap(f.fileno(), RECORD_BYTES)
        self._ints = memoryview(self._map).cast("q")  # pid, sequence, step, waiting
        self._floats = memoryview(self._map).cast("d")  # [4]: since, [9]: alive
        self._ints[0] = os.getpid()
        self.sequence, self.step, self._operation = 0, 0, b""
        self.beat_alive()

    def enter(self, operation: bytes, waiting: bool) -> None:
        """A communicator call starts (``waiting``: a blocking one)."""
        self.sequence += 1
        ints = self._ints
        ints[1], ints[2], ints[3] = self.sequence, self.step, waiting
        self._floats[4] = time.time()
        if operation is not self._operation:
            self._map[_OPERATION:_OPERATION + _OPERATION_BYTES] = operation.ljust(_OPERATION_BYTES, b"\0")
            self._operation = operation

    def leave(self) -> None:
        """The blocking call returned: the record says which call this rank did last."""
        self._ints[3] = 0
        self._floats[4] = time.time()

    def beat_alive(self) -> None:
        self._floats[_ALIVE_INDEX] = time.time()

    def close(self) -> None:
        self._ints.release()
        self._floats.release()
        self._map.close()
        self.path.unlink(missing_ok=True)


def read_beats(folder: str | Path, size: int, group: str = "") -> dict[int, Beat]:
    """Every rank's record that this process can see in ``folder``, by rank."""
    beats = {}
    for rank in range(size):
        try:
            raw = record_path(folder, rank, group).read_bytes()
        except OSError:
            continue
        if len(raw) < RECORD_BYTES:
            continue
        pid, sequence, step, waiting, since, operation = _CALL.unpack_from(raw)
        (alive,) = _ALIVE.unpack_from(raw, _CALL.size)
        beats[rank] = Beat(rank, pid, sequence, step, bool(waiting), since,
                           operation.rstrip(b"\0").decode(errors="replace"), alive)
    return beats
