"""Damaged checkpoints, pruning, preemption, a kill -9 and a fresh start through the real CLI
under mpiexec -n 2, each under a timeout: no valid checkpoint, and no metrics record written
before the checkpoint a run resumes from, is ever lost."""

import json
import re
import shutil
import signal
import sys

import pytest
from launch import mpiexec, mpinn, start_mpinn, wait_for

from mpinn.train.checkpoint import NAME, list_checkpoints, read_checkpoint

# digits, all 1347 samples for training: 22 steps an epoch; checkpoints every 7 steps and at
# epoch ends, the 3 newest kept.
RUN = ("train", "--hidden", "16", "--batch-size", "64", "--validation-split", "0",
       "--checkpoint-every", "7")


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """A folder after 3 epochs: ck/ holds ckpt-56, -63 and -66, and m.jsonl the metrics log."""
    folder = tmp_path_factory.mktemp("three_epochs")
    run = mpinn(*RUN, "--epochs", 3, "--checkpoint-dir", folder / "ck", "--metrics", folder / "m.jsonl")
    assert run.returncode == 0, run.stderr
    assert names(folder / "ck") == ["ckpt-00000056.npz", "ckpt-00000063.npz", "ckpt-00000066.npz"]
    return folder


def names(folder):
    return sorted(p.name for p in list_checkpoints(folder))


def steps(folder):
    return [int(NAME.match(name).group(1)) for name in names(folder)]


def copy(three_epochs, tmp_path):
    shutil.copytree(three_epochs, tmp_path, dirs_exist_ok=True)
    return tmp_path / "ck", tmp_path / "m.jsonl"


def damage(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path.read_bytes()


def contents(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def damaged_files(folder):
    return {p.name: p.read_bytes() for p in folder.glob("damaged-*/*")}


def resume(ck, log, *args):
    return mpinn(*RUN, "--checkpoint-dir", ck, "--metrics", log, "--resume", "auto", *args)


def test_every_checkpoint_damaged_exits_2_naming_them_and_changes_nothing(three_epochs, tmp_path):
    ck, log = copy(three_epochs, tmp_path)
    for path in list_checkpoints(ck):
        damage(path)
    before = contents(tmp_path)
    run = resume(ck, log, "--epochs", 4)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count("mpinn: error") == 1 and "Traceback" not in run.stderr
    assert f"checkpoint directory {ck} holds 3 checkpoint(s) and none is valid" in run.stderr
    assert all(str(path) in run.stderr for path in list_checkpoints(ck))
    assert contents(tmp_path) == before


def test_damaged_newest_resumes_from_the_older_and_rewrites_its_step_beside_it(three_epochs,
                                                                               tmp_path):
    ck, log = copy(three_epochs, tmp_path)
    damaged = {"ckpt-00000066.npz": damage(ck / "ckpt-00000066.npz")}
    (ck / ".ckpt-00000070.npz.tmp-4242").write_bytes(b"half a checkpoint")
    run = resume(ck, log, "--epochs", 3)  # 63 -> 66, the damaged file's step
    assert run.returncode == 0, run.stderr
    assert f"mpinn: resuming from {ck}/ckpt-00000063.npz: step 63, epoch 3, 19 batches into it" \
        in run.stdout
    assert "mpinn: warning: damaged checkpoint moved into" in run.stderr
    assert damaged_files(ck) == damaged  # kept byte for byte
    assert sorted(p.name for p in ck.iterdir() if p.is_file()) == names(ck)  # temporary gone
    assert names(ck) == ["ckpt-00000056.npz", "ckpt-00000063.npz", "ckpt-00000066.npz"]
    rewritten, resumed = (read_checkpoint(ck / f"ckpt-000000{s}.npz") for s in (66, 63))
    assert rewritten.sequence == resumed.sequence + 1 and rewritten.progress.epoch == 3


def test_keep_1_with_a_preemption_keeps_the_checkpoint_it_names(three_epochs, tmp_path):
    ck, log = copy(three_epochs, tmp_path)
    damaged = {"ckpt-00000066.npz": damage(ck / "ckpt-00000066.npz")}
    job = start_mpinn(*RUN, "--epochs", 300, "--checkpoint-dir", ck, "--resume", "auto",
                      "--keep-checkpoints", 1)
    try:
        wait_for(lambda: len(steps(ck)) == 1 and steps(ck)[0] > 66,
                 what="a new checkpoint, the only one kept")
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=30)
    finally:
        job.kill()
    assert job.returncode == 75, err
    written = re.search(r"checkpoint (\S+) written", err).group(1)
    assert [str(p) for p in list_checkpoints(ck)] == [written]
    assert read_checkpoint(written).progress.step > 66
    assert damaged_files(ck) == damaged


DIE_AFTER_RECORD = """
import os, signal, sys
from mpinn.train.callbacks import MetricsLog
from mpinn.cli import main
log_record = MetricsLog.on_step_end
def log_then_die(self, record):
    log_record(self, record)
    if self.active and record["step"] == 40:
        os.kill(os.getpid(), signal.SIGKILL)
MetricsLog.on_step_end = log_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_mid_epoch_then_resume_logs_each_step_once(three_epochs, tmp_path):
    script, ck, log = tmp_path / "dying.py", tmp_path / "ck", tmp_path / "m.jsonl"
    script.write_text(DIE_AFTER_RECORD)
    killed = mpiexec(2, sys.executable, script, *RUN, "--epochs", 2, "--checkpoint-dir", ck,
                     "--metrics", log, timeout=60)
    assert killed.returncode != 0 and names(ck)[-1] == "ckpt-00000035.npz"  # rank 0 killed at step 40
    before = log.read_text().splitlines(keepends=True)
    run = resume(ck, log, "--epochs", 2)
    assert run.returncode == 0, run.stderr
    assert "1 record(s) written after the checkpoint dropped" in run.stdout  # step 40's
    after = log.read_text().splitlines(keepends=True)
    assert after[:len(before) - 1] == before[:-1]  # up to the checkpoint, unchanged
    records = [json.loads(line) for line in after]
    windows = [(r["first_step"], r["step"]) for r in records if r["event"] == "step"]
    assert windows == [(1, 10), (11, 20), (21, 30), (31, 40)]  # window 31-40 completed once
    straight = [json.loads(line) for line in (three_epochs / "m.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for mine, theirs in zip(records, straight):  # what an uninterrupted run logged
        assert (mine["event"], mine["step"]) == (theirs["event"], theirs["step"])
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-9)


def test_fresh_moves_every_checkpoint_aside_and_starts_over(three_epochs, tmp_path):
    ck, log = copy(three_epochs, tmp_path)
    damaged = {"ckpt-00000066.npz": damage(ck / "ckpt-00000066.npz")}
    valid = {p.name: p.read_bytes() for p in list_checkpoints(ck) if p.name not in damaged}
    run = mpinn(*RUN, "--epochs", 1, "--checkpoint-dir", ck, "--resume", "fresh")
    assert run.returncode == 0, run.stderr
    assert "mpinn: starting afresh; 2 earlier checkpoint(s) moved into" in run.stdout
    assert {p.name: p.read_bytes() for p in ck.glob("previous-*/*")} == valid
    assert damaged_files(ck) == damaged
    assert names(ck) == ["ckpt-00000014.npz", "ckpt-00000021.npz", "ckpt-00000022.npz"]
    assert read_checkpoint(ck / "ckpt-00000022.npz").sequence == 4
