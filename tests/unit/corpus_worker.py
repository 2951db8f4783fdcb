"""Runs many CLI cases in one MPI job: ``mpiexec -n N python corpus_worker.py CASES RESULTS``.

Every rank calls ``mpinn.cli.main(argv)`` for each case in turn, in the current folder, with
its stdout and stderr captured per case; an unexpected exception is recorded with its
traceback instead of aborting the job. Rank 0 also records which files existing before the
case changed or vanished, then writes every rank's results as JSON.
"""

import contextlib
import hashlib
import io
import json
import sys
import traceback
from pathlib import Path

from mpi4py import MPI

import mpinn.parallel.failures
from mpinn.cli import main


class Crashed(Exception):
    """What the CLI would have aborted the job with."""


def record_crash(comm, exc, code=1):
    raise Crashed("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def snapshot(folder="."):
    """{path: sha256} of every file under ``folder`` (the heartbeat records aside)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(folder).rglob("*")
            if p.is_file() and not p.name.startswith(".mpinn-heartbeat-")}


def run_case(argv, rank):
    before = snapshot() if rank == 0 else {}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except Crashed as exc:
            code, err = "crashed", io.StringIO(err.getvalue() + str(exc))
        except Exception:  # one rank: the CLI lets the traceback through
            code, err = "crashed", io.StringIO(err.getvalue() + traceback.format_exc())
        except SystemExit as exc:
            code = exc.code
    after = snapshot() if rank == 0 else {}
    changed = sorted(p for p, digest in before.items() if after.get(p) != digest)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "changed": changed}


def run():
    mpinn.parallel.failures.report_and_abort = record_crash
    cases = json.loads(Path(sys.argv[1]).read_text())
    rank = MPI.COMM_WORLD.Get_rank()
    results = [run_case(case, rank) for case in cases]
    gathered = MPI.COMM_WORLD.gather(results)
    if rank == 0:
        Path(sys.argv[2]).write_text(json.dumps(gathered))


if __name__ == "__main__":
    run()
