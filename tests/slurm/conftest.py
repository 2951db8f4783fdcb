"""A real one-node Slurm for the tests of slurm/*.sbatch: started once per session by
start-local-slurm.sh (Debian, root: it installs slurm-wlm and munge with apt) and stopped
by stop-local-slurm.sh, which ends only the daemons it started. Skipped elsewhere."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _why_no_slurm() -> str | None:
    if not sys.platform.startswith("linux") or not Path("/etc/debian_version").exists():
        return "the local Slurm needs Debian (it installs slurm-wlm and munge with apt)"
    if os.geteuid() != 0:
        return "the local Slurm needs root (apt-get install, munged, slurmctld and slurmd)"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "no apt-get to install slurm-wlm with"
    return None


@pytest.fixture(scope="session")
def slurm():
    """Start the local Slurm for the session; always stop it afterwards."""
    reason = _why_no_slurm()
    if reason:
        pytest.skip(reason)
    try:
        subprocess.run(["bash", str(HERE / "start-local-slurm.sh")], check=True, timeout=600)
        yield
    finally:
        subprocess.run(["bash", str(HERE / "stop-local-slurm.sh")], timeout=120)
