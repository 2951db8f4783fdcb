"""A process's rank before MPI starts, from every launcher's variables, and the rank-0 filter."""

import os
import subprocess
import sys

import pytest

from mpinn.launcher import launch_rank, launch_size


@pytest.mark.parametrize("environ, rank, size", [
    ({"PMI_RANK": "3", "PMI_SIZE": "4"}, 3, 4),                                # MPICH's hydra
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3", "PMIX_RANK": "2"}, 2, 3),  # Open MPI
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, 5, 8),                        # srun
    ({"PMIX_RANK": "1", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, 1, 2),      # srun --mpi=pmix
    ({}, None, None),                                                          # no launcher
])
def test_each_launcher_gives_the_rank_and_size(environ, rank, size):
    assert (launch_rank(environ), launch_size(environ)) == (rank, size)


@pytest.mark.parametrize("mpi", [{"PMI_RANK": "2", "PMI_SIZE": "4"},
                                 {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4"}])
def test_an_mpiexec_inside_a_batch_script_wins_over_the_scripts_slurm_rank(mpi):
    environ = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", **mpi}
    assert (launch_rank(environ), launch_size(environ)) == (2, 4)


def test_the_rank_comes_from_the_process_environment_by_default(monkeypatch):
    for name in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_RANK", "7")
    assert launch_rank() == 7


def filtered(rank):
    env = {name: value for name, value in os.environ.items()
           if name not in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")}
    if rank is not None:
        env["PMI_RANK"] = str(rank)
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    return subprocess.run([sys.executable, "-m", "mpinn.launcher", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("rank, stdout", [(0, "out\n"), (1, ""), (None, "out\n")])
def test_the_filter_keeps_stdout_on_rank_0_only_and_stderr_everywhere(rank, stdout):
    run = filtered(rank)
    assert (run.returncode, run.stdout, run.stderr) == (0, stdout, "err\n")


def test_the_filter_without_a_command_says_how_to_use_it():
    run = subprocess.run([sys.executable, "-m", "mpinn.launcher"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and run.stderr.startswith("usage: python -m mpinn.launcher COMMAND")
