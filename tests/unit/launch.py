"""Launching real jobs from tests: the mpinn CLI or a script under mpiexec, always with a timeout."""

import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def mpiexec(ranks, *command, timeout=120, cwd=None):
    """Run ``command`` on ``ranks`` ranks; returns the CompletedProcess (text output)."""
    full = [str(BIN / "mpiexec"), "-n", str(ranks), *map(str, command)]
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def mpinn(*args, ranks=2, cwd=None, timeout=120):
    """The real CLI (``python -m mpinn ARGS``) under mpiexec."""
    return mpiexec(ranks, sys.executable, "-m", "mpinn", *args, timeout=timeout, cwd=cwd)


def start_mpinn(*args, ranks=2, cwd=None):
    """Start the CLI under mpiexec without waiting (a Popen with text pipes)."""
    command = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpinn", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=cwd)


def rank_pid(launcher_pid, rank, timeout=30):
    """The PID of MPI rank ``rank`` among the descendants of the launcher (by PMI_RANK)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _descendants(launcher_pid):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PMI_RANK={rank}".encode() in environ:
                return pid
        time.sleep(0.05)
    raise TimeoutError(f"rank {rank} of launcher {launcher_pid} not found")


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
