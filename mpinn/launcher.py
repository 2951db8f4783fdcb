"""A process's rank and world size before MPI starts, read from the variables its launcher set.

Stdlib only (no numpy, no mpi4py), so that what runs before MPI, or never starts it, can ask:
the Makefile's rank-0 output filter, the tests' per-rank folders, and the tests that find a
chosen rank's process. MPI's own variables come before Slurm's, because a launcher started
inside a Slurm batch script passes the script's ``SLURM_PROCID=0`` on to every rank.

    python -m mpinn.launcher COMMAND [ARG ...]   # runs COMMAND; its stdout kept on rank 0 only
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# (rank variable, size variable) in the order they are trusted; None: the launcher sets none.
LAUNCHER_VARIABLES = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI: PRRTE's mpiexec/mpirun
    ("PMI_RANK", "PMI_SIZE"),  # MPICH (hydra's mpiexec), Intel MPI; srun --mpi=pmi2
    ("PMIX_RANK", None),  # a PMIx launcher: srun --mpi=pmix
    ("SLURM_PROCID", "SLURM_NTASKS"),  # srun
)


def launch_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's rank as its launcher numbered it, or None when no launcher started it."""
    return _first_int(environ, [rank for rank, _ in LAUNCHER_VARIABLES])


def launch_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of ranks the launcher started, or None when no launcher started this process."""
    return _first_int(environ, [size for _, size in LAUNCHER_VARIABLES if size])


def _first_int(environ: Mapping[str, str] | None, names: list[str]) -> int | None:
    environ = os.environ if environ is None else environ
    for name in names:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def main(argv: list[str] | None = None) -> None:
    """Replace this process by ``argv``, with its stdout dropped unless this is rank 0 (or no
    launcher started it). Stderr is kept everywhere: a failing rank still reports."""
    command = sys.argv[1:] if argv is None else argv
    if not command:
        sys.exit("usage: python -m mpinn.launcher COMMAND [ARG ...]  (stdout kept on rank 0 only)")
    if launch_rank() not in (None, 0):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
