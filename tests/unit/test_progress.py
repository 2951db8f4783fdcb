"""Progress while an epoch runs: lines under mpiexec's pipes, Keras' verbose levels, and an
interval that every rank agrees on."""

import re
import subprocess
import sys

import numpy as np
import pytest
from launch import BIN, ENV, mpinn

from mpinn.errors import ConfigError
from mpinn.train.progress import ProgressTicker, format_rate, format_seconds, progress_seconds

STEP_LINE = re.compile(r"^step (\d+)/(\d+)  loss \d+\.\d{4}  [\d,.]+ samples/s  elapsed .+  ETA .+$")
RUN = ("train", "--epochs", "2", "--hidden", "32", "--batch-size", "32")


def step_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("step ")]


@pytest.mark.parametrize("seconds, text", [(0.0032, "3.2 ms"), (12.34, "12.3 s"), (245, "4 min 05 s"),
                                           (7380, "2 h 03 min")])
def test_durations_keep_sensible_precision(seconds, text):
    assert format_seconds(seconds) == text


def test_rates_group_thousands():
    assert format_rate(26678.4) == "26,678 samples/s" and format_rate(12.34) == "12.3 samples/s"


def test_an_explicit_log_every_prints_every_n_steps_from_rank_0_only():
    run = mpinn(*RUN, "--log-every", "5", ranks=2)
    assert run.returncode == 0, run.stderr
    lines = step_lines(run.stdout)
    assert all(STEP_LINE.match(line) for line in lines), lines
    steps = [int(STEP_LINE.match(line)[1]) for line in lines]
    total = int(STEP_LINE.match(lines[0])[2])
    assert steps == list(range(5, total + 1, 5))  # once each: rank 1 prints nothing
    epochs = [line for line in run.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all(re.search(r"\(\d+\.\d (ms|s), [\d,.]+ samples/s\)$", e) for e in epochs)


def test_without_an_interval_the_ranks_agree_on_one_from_the_first_steps():
    command = [str(BIN / "mpiexec"), "-n", "2", sys.executable, "-m", "mpinn", *RUN]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120,
                         env={**ENV, "MPINN_PROGRESS_SECONDS": "0.005"})  # a few steps
    assert run.returncode == 0, run.stderr
    steps = [int(STEP_LINE.match(line)[1]) for line in step_lines(run.stdout)]
    assert len(steps) >= 2, run.stdout  # 76 steps of 0.3 ms (idle) to 10 ms (loaded)
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    assert len(gaps) == 1, steps  # a fixed number of steps between lines, decided once


@pytest.mark.parametrize("verbose, epoch_lines, step_lines_expected", [(0, 0, False), (2, 2, False)])
def test_keras_verbose_levels(verbose, epoch_lines, step_lines_expected):
    run = mpinn(*RUN, "--log-every", "5", "--verbose", str(verbose), ranks=1)
    assert run.returncode == 0, run.stderr
    assert len([line for line in run.stdout.splitlines() if line.startswith("epoch ")]) == epoch_lines
    assert bool(step_lines(run.stdout)) == step_lines_expected
    assert "test accuracy" in run.stdout


class TwoIdenticalRanks:
    """reduce_sum as over two ranks that measured the same values."""

    def reduce_sum(self, values):
        return 2 * np.asarray(values, dtype=float)


class Recorder:
    def __init__(self):
        self.records = []

    def on_progress(self, record):
        self.records.append(record)


def test_the_interval_comes_from_the_mean_step_time(monkeypatch):
    clock = iter(np.arange(0.0, 100.0, 0.5))  # every perf_counter call advances 0.5 s
    monkeypatch.setattr("mpinn.train.progress.time.perf_counter", lambda: next(clock))
    monkeypatch.setenv("MPINN_PROGRESS_SECONDS", "10")
    ticker = ProgressTicker(TwoIdenticalRanks(), total_steps=40, start_step=0, every=None)
    recorder = Recorder()
    for step in range(1, 4):
        ticker.add(np.array([1.0, 1.0, 4.0]), step, [recorder])
    # started at t=0 and probed at t=1 after 3 steps, on both ranks: 1/3 s a step
    assert ticker.every == 30 and recorder.records == []


def test_a_bad_progress_interval_is_a_config_error(monkeypatch):
    monkeypatch.setenv("MPINN_PROGRESS_SECONDS", "-1")
    with pytest.raises(ConfigError, match="MPINN_PROGRESS_SECONDS must be a positive number"):
        progress_seconds()

