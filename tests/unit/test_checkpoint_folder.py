"""A checkpoint folder in one process: pruning by write order, damaged files set aside and never
deleted, names never reused, temporary files removed, and the metrics log on resume."""

import json
import os
import signal

import numpy as np
import pytest
from test_checkpoint import X, Y, fit, files, make_model

import mpinn.train
from mpinn import ConfigError, Preempted
from mpinn.config import make_config
from mpinn.parallel import Communicator, DataParallel
from mpinn.train import Callback, MetricsLog
from mpinn.train.checkpoint import Progress, list_checkpoints, read_checkpoint, write_checkpoint
from mpinn.train.checkpoint_folder import prune, remove_temporaries, survey
from mpinn.train.checkpointing import Checkpointing

MODEL = make_model()


def write(folder, step, sequence):
    return write_checkpoint(folder, MODEL.params, MODEL.optimizer.state_dict(),
                            Progress(step=step), MODEL.net.get_config(), {}, sequence)


def damage(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path.read_bytes()


def names(folder):
    return sorted(p.name for p in list_checkpoints(folder))


def set_aside(folder, kind):
    """{file name: bytes} of every file in the ``<kind>-<time>/`` subfolders."""
    return {p.name: p.read_bytes() for sub in folder.glob(f"{kind}-*") for p in sub.iterdir()}


def test_pruning_keeps_the_newest_written_whatever_the_step_in_the_name(tmp_path):
    for step, sequence in ((50, 1), (40, 2), (30, 3)):
        write(tmp_path, step, sequence)
    written = write(tmp_path, 20, 4)
    prune(tmp_path, 2, written)
    assert names(tmp_path) == ["ckpt-00000020.npz", "ckpt-00000030.npz"]
    assert [v.sequence for v in survey(tmp_path).valid] == [4, 3]


def test_pruning_moves_damaged_files_aside_and_never_counts_them(tmp_path):
    older = write(tmp_path, 10, 1)
    damaged = {p.name: damage(p) for p in (write(tmp_path, 90, 2), write(tmp_path, 5, 3))}
    written = write(tmp_path, 20, 4)
    prune(tmp_path, 2, written)
    assert names(tmp_path) == [older.name, written.name]  # the two newest *valid* ones
    assert set_aside(tmp_path, "damaged") == damaged


def test_a_just_written_file_that_does_not_read_back_prunes_nothing(tmp_path, capsys):
    older = write(tmp_path, 10, 1)
    written = write(tmp_path, 20, 2)
    damage(written)
    prune(tmp_path, 1, written)
    assert names(tmp_path) == [older.name]
    assert list(set_aside(tmp_path, "damaged")) == [written.name]
    assert f"damaged checkpoint moved into {tmp_path}/damaged-" in capsys.readouterr().err


def test_only_temporary_files_of_checkpoint_writes_are_removed(tmp_path):
    left = [tmp_path / ".ckpt-00000060.npz.tmp-4242", tmp_path / ".ckpt-00000060-2.npz.tmp-7"]
    kept = [tmp_path / ".m.jsonl.tmp-4242", tmp_path / "notes.txt", write(tmp_path, 30, 1)]
    for path in left + kept[:2]:
        path.write_bytes(b"partial")
    assert sorted(remove_temporaries(tmp_path)) == sorted(left)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_fresh_moves_every_checkpoint_aside_and_starts_at_step_0(tmp_path):
    fit(make_model(), 1, Checkpointing(tmp_path, every=4))
    valid = files(tmp_path)
    damaged = {"ckpt-00000009.npz": damage(write(tmp_path, 9, 5))}
    (tmp_path / ".ckpt-00000012.npz.tmp-99").write_bytes(b"partial")
    fresh, straight = make_model(), make_model()
    fit(fresh, 1, Checkpointing(tmp_path, resume="fresh"))
    fit(straight, 1)
    np.testing.assert_array_equal(fresh.params, straight.params)
    assert set_aside(tmp_path, "previous") == valid and set_aside(tmp_path, "damaged") == damaged
    assert names(tmp_path) == ["ckpt-00000006.npz"]
    assert read_checkpoint(tmp_path / "ckpt-00000006.npz").sequence == 1


def test_auto_with_only_damaged_checkpoints_is_refused_and_changes_nothing(tmp_path):
    for step in (6, 12):
        damage(write(tmp_path, step, step))
    before = files(tmp_path)
    with pytest.raises(ConfigError, match=r"holds 2 checkpoint\(s\) and none is valid \(.*"
                                          r"ckpt-00000012.npz: unreadable .*ckpt-00000006.npz: "
                                          r"unreadable .*\); nothing was changed"):
        fit(make_model(), 2, Checkpointing(tmp_path, resume="auto"))
    assert files(tmp_path) == before


def test_a_periodic_save_on_an_epochs_last_step_is_written_once(tmp_path):
    fit(make_model(), 2, Checkpointing(tmp_path, every=3, keep=10))  # 6 batches an epoch
    assert names(tmp_path) == [f"ckpt-{s:08d}.npz" for s in (3, 6, 9, 12)]
    assert [read_checkpoint(tmp_path / n).progress.epoch for n in names(tmp_path)] == [0, 1, 1, 2]


class Preempt(Callback):
    """A scheduler's warning signal at the step record ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, record):
        if record["step"] == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


class CrashAfterEpoch(Callback):
    """A crash right after an epoch's record, before its checkpoint."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, values):
        if epoch == self.epoch:
            raise RuntimeError("crash")


def test_resuming_before_an_epoch_end_writes_beside_the_checkpoint_not_over_it(tmp_path, capsys):
    model = make_model()
    with pytest.raises(Preempted, match="preempted at step 6"):  # the epoch's last step
        mpinn.train.fit(model, X, Y, epochs=2, batch_size=16, verbose=0, log_every=1,
                        callbacks=[Preempt(6)], checkpoint=Checkpointing(tmp_path),
                        strategy=DataParallel(Communicator.local()))
    before = files(tmp_path)
    fit(make_model(), 1, Checkpointing(tmp_path, keep=2))
    assert f"resuming from {tmp_path}/ckpt-00000006.npz: step 6, epoch 1, 6 batches into it" \
        in capsys.readouterr().out
    assert names(tmp_path) == ["ckpt-00000006-2.npz", "ckpt-00000006.npz"]
    assert files(tmp_path)["ckpt-00000006.npz"] == before["ckpt-00000006.npz"]
    assert read_checkpoint(tmp_path / "ckpt-00000006-2.npz").progress.epoch == 1


def logged(path):
    """The metrics log's records without the timing fields, which differ between runs."""
    timing = ("samples_per_s", "compute_s", "comm_s")
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in path.read_text().splitlines()]


def fit_logged(tmp_path, log, epochs=3, checkpoint=None, stop=()):
    model = make_model()
    mpinn.train.fit(model, X, Y, epochs=epochs, batch_size=16, verbose=0, log_every=4,
                    checkpoint=checkpoint, callbacks=[MetricsLog(log, rank=0), *stop],
                    strategy=DataParallel(Communicator.local()))


def test_a_crash_then_resume_logs_what_an_uninterrupted_run_logs(tmp_path, capsys):
    fit_logged(tmp_path, tmp_path / "straight.jsonl")
    log, folder = tmp_path / "m.jsonl", tmp_path / "ck"
    with pytest.raises(RuntimeError, match="crash"):  # after the records of step 12 and epoch 1
        fit_logged(tmp_path, log, checkpoint=Checkpointing(folder, every=5),
                   stop=[CrashAfterEpoch(1)])
    with log.open("a") as f:
        f.write('{"event": "step", "st')  # a record cut short by the crash
    lines = log.read_text().splitlines(keepends=True)
    fit_logged(tmp_path, log, checkpoint=Checkpointing(folder, every=5))  # from step 10
    assert "3 record(s) written after the checkpoint dropped" in capsys.readouterr().out
    assert logged(log) == logged(tmp_path / "straight.jsonl")  # window 9-12 completed, no duplicate
    assert log.read_text().startswith("".join(lines[:3]))  # steps 4 and 8 and epoch 0: unchanged
    assert [r["first_step"] for r in logged(log) if r["event"] == "step"] == [1, 5, 9, 13]


def test_resume_settings_are_checked():
    with pytest.raises(ConfigError, match="resume fresh needs a checkpoint directory: add option checkpoint_dir"):
        make_config({"resume": "fresh"})
    with pytest.raises(ConfigError, match="unknown resume 'sometimes'; choose one of: never, auto, fresh"):
        make_config({"resume": "sometimes", "checkpoint_dir": "ck"})


def test_a_fresh_run_moves_an_earlier_metrics_log_aside(tmp_path, capsys):
    from mpinn.train.callbacks import MetricsLog

    log = tmp_path / "m.jsonl"
    log.write_text('{"event": "step", "step": 10}\n')
    metrics_log = MetricsLog(log, rank=0)
    metrics_log.set_params({"epochs": 1, "steps": 10, "start_step": 0, "start_epoch": 0})
    metrics_log.on_train_begin()
    assert log.read_text() == ""
    (aside,) = tmp_path.glob("m.jsonl.previous-*")
    assert aside.read_text() == '{"event": "step", "step": 10}\n'
    assert f"moved to {aside.name}" in capsys.readouterr().out
