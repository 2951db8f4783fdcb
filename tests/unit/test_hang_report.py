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
from mpinn.nn import Dense, Sequential
x, y = make_classification(n_samples=512, n_features=16, n_classes=4, seed=0)
model = Sequential([Dense(32, input_dim=16, activation="relu"), Dense(4, activation="softmax")])
model.compile("sgd", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=100000, batch_size=64, verbose=0, watchdog=3)
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
