"""A rank that stops (SIGSTOP) mid-training at 4 ranks: the watchdog's report names it.

The job trains under ``fit``'s watchdog (3 s here) with its heartbeat records in
``MPINN_RUN_DIR``; the test stops one rank, rank 0 included, and expects one report, from the
lowest rank still responding, that names the stopped rank and where every rank is.
"""

import os
import signal
import subprocess
import sys

import pytest
from launch import BIN, ENV, rank_pid, wait_for

from mpinn.parallel.heartbeat import read_beats

LONG_TRAINING = """
from mpinn.data import make_classification
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.train import fit
x, y = make_classification(n_samples=512, n_features=16, n_classes=4, seed=0)
model = Sequential([Dense(32, input_dim=16, activation="relu"), Dense(4, activation="softmax")])
model.compile("sgd", loss="sparse_categorical_crossentropy")
fit(model, x, y, epochs=100000, batch_size=64, verbose=0, watchdog=3)
"""


def training(run_dir):
    beats = read_beats(run_dir, 4)
    return len(beats) == 4 and all(beat.step > 5 for beat in beats.values())


@pytest.mark.parametrize("stopped", [0, 2])
def test_a_stopped_rank_is_named_by_one_report(tmp_path, stopped):
    script = tmp_path / "train.py"
    script.write_text(LONG_TRAINING)
    run_dir = tmp_path / "run"
    env = {**ENV, "MPINN_RUN_DIR": str(run_dir)}
    job = subprocess.Popen([str(BIN / "mpiexec"), "-n", "4", sys.executable, str(script)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    pid = None
    try:
        wait_for(lambda: training(run_dir), timeout=60, what="four ranks past step 5")
        pid = rank_pid(job.pid, stopped)
        os.kill(pid, signal.SIGSTOP)
        _, stderr = job.communicate(timeout=60)
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        job.kill()
    assert job.returncode != 0
    assert stderr.count("ranks not responding:") == 1, stderr
    assert f"ranks not responding: {stopped}; ranks not at this collective: " in stderr, stderr
    assert f"  rank {stopped}: NOT RESPONDING for" in stderr
    reporter = 1 if stopped == 0 else 0
    assert f"[rank {reporter}] watchdog: " in stderr, stderr
    assert stderr.count("waiting in ") >= 3 and "step" in stderr


def test_the_report_covers_the_ranks_it_can_see_and_says_so(tmp_path):
    from mpinn.parallel.heartbeat import _ALIVE_INDEX, Heartbeat
    from mpinn.parallel.watchdog import hang_report

    beats = [Heartbeat(tmp_path, rank, 4) for rank in range(3)]  # rank 3: on another node
    for beat in beats:
        beat.step = 12
        beat.enter(b"Allreduce", True)
    beats[0]._floats[_ALIVE_INDEX] -= 60  # rank 0 stopped a minute ago
    beats[2].leave()  # rank 2 computes
    report = hang_report(beats[1], read_beats(tmp_path, 4), stale_after=2.0)
    assert report.startswith("ranks not responding: 0; ranks not at this collective: 2\n")
    assert "rank 1: waiting in Allreduce (call #1) at step 12" in report
    assert "rank 2: computing since Allreduce (call #1) at step 12 ended" in report
    assert f"rank 3: no heartbeat record in {tmp_path}" in report
    assert "this report covers the 3 of 4 ranks whose records it can see" in report
    beats[2].enter(b"Allreduce", True)  # rank 2 waits too: rank 1, lower, reports alone
    assert hang_report(beats[2], read_beats(tmp_path, 4), stale_after=2.0) is None
    for beat in beats:
        beat.close()
    assert not list(tmp_path.iterdir())
