"""ZeRO under ``--on-failure shrink``: each rank keeps a buddy copy of its neighbour's optimizer-
state shard, so a death loses nothing and, in deterministic mode, the run ends with the bits of
an uninterrupted one; neighbouring ranks dying together lose a shard and end the run with 75.
Real jobs under Open MPI's ``mpiexec --with-ft ulfm``, each under a timeout; the named ranks
kill themselves at an exact step (MPINN_FAULT_INJECT). Skipped unless this environment's MPI
is Open MPI (make test-openmpi)."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from launch import ENV, ULFM_FLAGS, is_open_mpi, mpinn

from mpinn.faults import VARIABLE

pytestmark = pytest.mark.skipif(not is_open_mpi(), reason="needs Open MPI's fault tolerance "
                                "(mpiexec --with-ft ulfm): run under .venv-openmpi (make test-openmpi)")

# Adam with a clipping norm: state to lose, and norms summed over the shards.
RUN = ("train", "--strategy", "zero", "--deterministic", "--epochs", "1", "--batch-size", "64",
       "--hidden", "32", "--validation-split", "0", "--verbose", "0", "--optimizer", "adam",
       "--clip-norm", "1.0", "--save", "model.npz")


def digest(folder):
    with np.load(folder / "model.npz") as data:
        return hashlib.sha256(data["params"].tobytes()).hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The deterministic run without a failure, on one rank (the same bits at any count)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    run = subprocess.run([sys.executable, "-m", "mpinn", *RUN], capture_output=True, text=True,
                         timeout=120, env=ENV, cwd=folder)
    assert run.returncode == 0, run.stderr
    return digest(folder)


# a middle rank; the checkpoint writer
@pytest.mark.parametrize("stage, dead", [(2, 1), (1, 0)])
def test_zero_loses_a_rank_and_ends_with_the_uninterrupted_bits(tmp_path, uninterrupted, stage, dead):
    run = mpinn(*RUN, "--zero-stage", stage, "--on-failure", "shrink", ranks=4, cwd=tmp_path,
                timeout=120, flags=ULFM_FLAGS, env={VARIABLE: f"reduce:8:{dead}"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"mpinn: rank(s) {dead} of the job died; continuing on 3 rank(s)" in run.stderr
    assert digest(tmp_path) == uninterrupted


def test_neighbours_dying_together_lose_a_shard_and_exit_75(tmp_path):
    run = mpinn(*RUN, "--on-failure", "shrink", "--checkpoint-dir", "ck", "--checkpoint-every", "5",
                ranks=4, cwd=tmp_path, timeout=120, flags=ULFM_FLAGS,
                env={VARIABLE: "forward:8:1,forward:8:2"})
    assert run.returncode == 75, run.stdout + run.stderr
    assert run.stderr.count("mpinn: rank(s) 1, 2 of the job died and ZeRO lost the optimizer-state "
                            "shard of rank 2 (copy on rank 1)") == 1, run.stderr
    assert "Continue from the last checkpoint, ck/ckpt-00000005.npz, with --resume auto." in run.stderr
