"""Faults with real processes under mpiexec -n 2, each under a timeout: a killed rank, a crash
mid-checkpoint, an exception on one rank, a stuck collective, preemption, and bad input that
must exit 2 with one message without touching existing checkpoints."""

import os
import signal
import sys
import time

import numpy as np
import pytest
from launch import is_open_mpi, mpiexec, mpinn, rank_pid, start_mpinn, wait_for

from mpinn.train.checkpoint import list_checkpoints

RUN = ("train", "--hidden", "256,256", "--batch-size", "16", "--seed", "3", "--validation-split", "0")


def params(path):
    with np.load(path) as data:
        return data["params"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Final parameters of 10 epochs without interruption (the reference trajectory)."""
    path = tmp_path_factory.mktemp("reference") / "model.npz"
    run = mpinn(*RUN, "--epochs", 10, "--save", path)
    assert run.returncode == 0, run.stderr
    return params(path)


def resume_and_compare(tmp_path, reference, ranks=2):
    final = tmp_path / "final.npz"
    run = mpinn(*RUN, "--epochs", 10, "--checkpoint-dir", tmp_path / "ck", "--resume", "auto",
                "--save", final, ranks=ranks)
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(params(final), reference, rtol=1e-4, atol=1e-5)
    return run


def test_sigkill_of_one_rank_ends_the_job_and_resume_finishes_the_trajectory(tmp_path, uninterrupted):
    job = start_mpinn(*RUN, "--epochs", 10, "--checkpoint-dir", tmp_path / "ck",
                      "--checkpoint-every", 25)
    try:
        victim = rank_pid(job.pid, 1)
        wait_for(lambda: list_checkpoints(tmp_path / "ck"), what="a first checkpoint")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        job.wait(timeout=30)
    finally:
        job.kill()
    assert job.returncode != 0 and time.monotonic() - killed_at < 30
    assert list_checkpoints(tmp_path / "ck")[0].name != "ckpt-00000850.npz"  # it was cut short
    resume_and_compare(tmp_path, uninterrupted, ranks=1)  # and at another rank count


DIE_IN_SECOND_SAVE = """
import os, signal, sys
import numpy as np
real_savez, calls = np.savez, []
def savez_then_die(f, **arrays):
    calls.append(1)
    if len(calls) == 2:
        f.write(b"PK half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_savez(f, **arrays)
np.savez = savez_then_die
from mpinn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_intact_and_used(tmp_path,
                                                                                  uninterrupted):
    script = tmp_path / "dying.py"
    script.write_text(DIE_IN_SECOND_SAVE)
    run = mpiexec(2, sys.executable, script, *RUN, "--epochs", 10, "--checkpoint-dir",
                  tmp_path / "ck", "--checkpoint-every", 30, timeout=60)
    assert run.returncode != 0
    left = sorted(p.name for p in (tmp_path / "ck").iterdir()
                  if not p.name.startswith(".mpinn-heartbeat-"))  # the killed job's records
    assert left[0].startswith(".ckpt-00000060.npz.tmp-") and left[1:] == ["ckpt-00000030.npz"]
    run = resume_and_compare(tmp_path, uninterrupted)
    assert f"mpinn: removed {left[0]}, left by an interrupted checkpoint write" in run.stdout
    assert f"resuming from {tmp_path / 'ck' / left[1]}: step 30, epoch 1" in run.stdout
    assert "damaged" not in run.stderr
    assert not [p for p in (tmp_path / "ck").iterdir() if p.name.startswith(".")]


def preemption_signal():
    """What a scheduler sends the launcher: MPICH's hydra passes SIGTERM on to every rank, while
    Open MPI's mpiexec answers SIGTERM by ending the job itself (exit 1) and passes SIGUSR1 on."""
    return signal.SIGUSR1 if is_open_mpi() else signal.SIGTERM


def test_a_preemption_signal_checkpoints_exits_75_and_resume_continues(tmp_path, uninterrupted):
    job = start_mpinn(*RUN, "--epochs", 10, "--checkpoint-dir", tmp_path / "ck")
    try:
        wait_for(lambda: list_checkpoints(tmp_path / "ck"), what="the first epoch's checkpoint")
        job.send_signal(preemption_signal())
        _, err = job.communicate(timeout=30)
    finally:
        job.kill()
    assert job.returncode == 75, err
    assert err.count("mpinn: preempted at step") == 1 and "run again with --resume auto" in err
    resume_and_compare(tmp_path, uninterrupted)


RAISE_ON_RANK_1 = """
from mpinn.data import digits
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.train import Callback

class Boom(Callback):
    def on_step_end(self, record):
        from mpi4py import MPI
        if MPI.COMM_WORLD.Get_rank() == 1 and record["step"] == 20:
            raise RuntimeError("boom on rank 1")

data = digits()
model = Sequential([Dense(16, input_dim=64, activation="relu"), Dense(10, activation="softmax")])
model.compile("adam", loss="sparse_categorical_crossentropy")
model.fit(data.x_train, data.y_train, epochs=50, batch_size=16, callbacks=[Boom()])
"""


def test_an_exception_on_one_rank_aborts_the_job_with_its_traceback(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text(RAISE_ON_RANK_1)
    start = time.monotonic()
    run = mpiexec(2, sys.executable, script, timeout=60)
    assert run.returncode != 0 and time.monotonic() - start < 30
    assert "[rank 1] Traceback" in run.stderr and "[rank 1] RuntimeError: boom on rank 1" in run.stderr
    assert "[rank 0] Traceback" not in run.stderr


STUCK_COLLECTIVE = """
import time
import numpy as np
from mpinn.parallel import Communicator
comm = Communicator.world(watchdog_seconds=1.5)
comm.note_step(7)
if comm.rank == 1:
    time.sleep(120)  # never joins the reduction
comm.Allreduce(np.ones(4))
"""


def test_the_watchdog_names_the_stuck_operation_step_and_rank_then_aborts(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_COLLECTIVE)
    start = time.monotonic()
    run = mpiexec(2, sys.executable, script, timeout=60)
    assert run.returncode != 0 and time.monotonic() - start < 30
    assert ("[rank 0] watchdog: Allreduce at step 7 has not completed after 1.5 s; aborting the job"
            in run.stderr)


def write_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((40, 6)), "y_train": rng.integers(0, 3, 40),
              "x_test": rng.random((10, 6)), "y_test": rng.integers(0, 3, 10), **changes}
    np.savez(path, **arrays)
    return path


def bad_data(tmp_path, kind):
    rng = np.random.default_rng(1)
    if kind == "wrong shape":
        return write_npz(tmp_path / "d.npz", x_test=rng.random((10, 7)))
    if kind == "nan":
        x = rng.random((40, 6))
        x[5, 2] = np.nan
        return write_npz(tmp_path / "d.npz", x_train=x)
    if kind == "labels":
        return write_npz(tmp_path / "d.npz", y_train=np.r_[-1, rng.integers(0, 3, 39)])
    good = write_npz(tmp_path / "good.npz")
    (tmp_path / "d.npz").write_bytes(good.read_bytes()[:300])
    return tmp_path / "d.npz"


@pytest.mark.parametrize("kind, message", [
    ("wrong shape", "x_test has 7 features but x_train has 6"),
    ("nan", "x_train contains 1 NaN and 0 Inf values (first in row 5)"),
    ("labels", "y_train must hold class numbers >= 0: found -1 at row 0"),
    ("truncated", "cannot read"),
])
def test_bad_data_exits_2_with_one_message_and_leaves_checkpoints_alone(tmp_path, kind, message):
    checkpoints = tmp_path / "ck"
    first = mpinn("train", "--dataset", write_npz(tmp_path / "ok.npz"), "--epochs", 1,
                  "--checkpoint-dir", checkpoints)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    run = mpinn("train", "--dataset", bad_data(tmp_path, kind), "--epochs", 2,
                "--checkpoint-dir", checkpoints, "--resume", "auto")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count("mpinn: error") == 1 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before


def test_a_checkpoint_from_another_model_exits_2_and_stays_intact(tmp_path):
    checkpoints = tmp_path / "ck"
    assert mpinn("train", "--epochs", 1, "--hidden", 32, "--checkpoint-dir", checkpoints).returncode == 0
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    run = mpinn("train", "--epochs", 2, "--checkpoint-dir", checkpoints, "--resume", "auto")
    assert run.returncode == 2 and run.stderr.count("mpinn: error") == 1
    assert "--hidden 64 differs from 32 in checkpoint" in run.stderr
    assert "Traceback" not in run.stderr
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before
