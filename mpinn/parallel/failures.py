"""A failure on one rank must end the job, never leave the other ranks waiting in a collective."""

from __future__ import annotations

import sys
import traceback
from types import TracebackType

from mpinn.parallel.comm import Communicator


def report_and_abort(comm: Communicator, exc: BaseException, code: int = 1) -> None:
    """Print this rank's traceback, tagged with its rank, then abort every rank of the job."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.write("".join(f"[rank {comm.rank}] {line}" for line in "".join(lines).splitlines(True)))
    sys.stderr.write(f"[rank {comm.rank}] aborting all {comm.size} ranks\n")
    sys.stderr.flush()
    comm.abort(code)


def install_abort_hook(comm: Communicator) -> None:
    """Make an uncaught exception on this rank abort the whole job (ChainerMN's opt-in hook)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, KeyboardInterrupt):
            previous(kind, exc, tb)
        report_and_abort(comm, exc.with_traceback(tb))

    sys.excepthook = hook
