"""Strategies that cannot shrink (pipeline, tensor, grid, asynchronous, local SGD) under
``--on-failure shrink``: when a rank dies, every survivor stops, none hangs, with exit code 75
and one message naming the dead rank and the last checkpoint. Real jobs under Open MPI's
``mpiexec --with-ft ulfm``, each under a timeout; the named rank kills itself at an exact step
(MPINN_FAULT_INJECT, see mpinn.faults). Skipped unless this environment's MPI is Open MPI
(make test-openmpi runs them under .venv-openmpi)."""

import pytest
from launch import ULFM_FLAGS, is_open_mpi, mpinn

from mpinn.faults import VARIABLE
from mpinn.train.checkpoint_folder import survey

pytestmark = pytest.mark.skipif(not is_open_mpi(), reason="needs Open MPI's fault tolerance "
                                "(mpiexec --with-ft ulfm): run under .venv-openmpi (make test-openmpi)")

RUN = ("train", "--epochs", "1", "--batch-size", "64", "--hidden", "32,32", "--validation-split", "0",
       "--verbose", "0", "--on-failure", "shrink")
CHECKPOINTS = ("--checkpoint-dir", "ck", "--checkpoint-every", "5")


@pytest.mark.parametrize("strategy, ranks, dead", [
    (("--strategy", "pipeline"), 3, 1),  # its neighbours wait on it point to point
    (("--grid", "data=2,tensor=2"), 4, 0),  # sub-communicators; the checkpoint writer dies
    (("--strategy", "async"), 3, 2),  # a worker: the server waits on any of them
])
def test_a_strategy_that_cannot_shrink_stops_every_survivor_with_exit_75(tmp_path, strategy, ranks,
                                                                         dead):
    run = lose_a_rank(tmp_path, ranks, dead, *strategy, *CHECKPOINTS)
    last = survey(tmp_path / "ck").valid[0]
    assert last.step == 5 and f"Continue from the last checkpoint, ck/{last.path.name}, " in run.stderr


def test_without_checkpoints_the_message_says_how_to_keep_one(tmp_path):
    run = lose_a_rank(tmp_path, 2, 1, "--strategy", "local-sgd")
    assert "No checkpoint was written: with a checkpoint directory (--checkpoint-dir)" in run.stderr


def lose_a_rank(tmp_path, ranks, dead, *args):
    """Train on ``ranks`` ranks, rank ``dead`` killing itself in step 8: exit 75 and one
    message, naming it, from the lowest survivor."""
    run = mpinn(*RUN, *args, ranks=ranks, cwd=tmp_path, timeout=90, flags=ULFM_FLAGS,
                env={VARIABLE: f"forward:8:{dead}"})
    assert run.returncode == 75, run.stdout + run.stderr
    assert run.stderr.count("mpinn: rank(s)") == 1, run.stderr
    assert f"mpinn: rank(s) {dead} of the job died and " in run.stderr
    assert "Traceback" not in run.stderr
    return run
