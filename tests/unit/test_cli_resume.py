"""Resume through the real CLI: what a checkpoint restores, what given flags change, what they cannot."""

import json

import numpy as np
import pytest
from launch import mpinn

from mpinn.train.checkpoint import list_checkpoints

BASE = ("train", "--dataset", "xor", "--hidden", 8, "--batch-size", 16, "--optimizer", "sgd")


def saved_meta(directory):
    with np.load(list_checkpoints(directory)[0]) as data:
        return json.loads(str(data["meta"]))


def test_given_hyperparameters_win_on_resume_with_one_notice_and_others_are_the_checkpoints(tmp_path):
    run = mpinn(*BASE, "--epochs", 1, "--lr", 0.02, "--momentum", 0.5, "--checkpoint-dir", tmp_path,
                ranks=1)
    assert run.returncode == 0, run.stderr
    run = mpinn(*BASE, "--resume", "auto", "--epochs", 2, "--checkpoint-dir", tmp_path, ranks=1)
    assert run.returncode == 0, run.stderr
    assert "replace the checkpoint's: epochs 1 -> 2\n" in run.stdout  # lr, momentum: the checkpoint's
    meta = saved_meta(tmp_path)
    assert meta["step"] > 0 and meta["optimizer"]["hyper"]["lr"] == 0.02
    assert meta["optimizer"]["hyper"]["momentum"] == 0.5

    run = mpinn(*BASE, "--resume", "auto", "--epochs", 3, "--lr", 0.5, "--checkpoint-dir", tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("mpinn: settings given for this run replace the checkpoint's: "
                            "lr 0.02 -> 0.5, epochs 2 -> 3\n") == 1
    assert run.stdout.count("epoch 3/3") == 1 and "epoch 2/3" not in run.stdout
    meta = saved_meta(tmp_path)
    assert meta["optimizer"]["hyper"]["lr"] == 0.5 and meta["optimizer"]["hyper"]["momentum"] == 0.5
    assert meta["run"]["epochs"] == 3

    run = mpinn(*BASE, "--resume", "auto", "--checkpoint-dir", tmp_path, ranks=1)  # the checkpoint's 3 epochs
    assert run.returncode == 0 and "epoch 4/" not in run.stdout and "test loss" in run.stdout, run.stderr

    run = mpinn(*BASE, "--resume", "auto", "--epochs", 4, "--checkpoint-dir", tmp_path, "--seed", 7)
    assert run.returncode == 2
    assert run.stderr.count("mpinn: error: --seed 7 differs from 0 in checkpoint") == 1, run.stderr


def test_a_schedule_continues_from_its_position_with_a_new_base_rate(tmp_path):
    schedule = ("--lr-schedule", "step", "--lr-step-size", 1, "--lr-factor", 0.5)
    run = mpinn(*BASE, *schedule, "--epochs", 2, "--lr", 0.1, "--checkpoint-dir", tmp_path, ranks=1)
    assert run.returncode == 0, run.stderr
    assert saved_meta(tmp_path)["optimizer"]["hyper"]["lr"] == 0.025
    run = mpinn(*BASE, *schedule, "--resume", "auto", "--epochs", 3, "--lr", 0.4,
                "--checkpoint-dir", tmp_path, ranks=1)
    assert run.returncode == 0, run.stderr
    assert "lr 0.1 -> 0.4" in run.stdout
    meta = saved_meta(tmp_path)
    assert meta["optimizer"]["schedule"] == {"type": "StepLR", "count": 3, "base_lr": 0.4}
    assert meta["optimizer"]["hyper"]["lr"] == 0.05


def test_the_plateau_schedule_reduces_the_lr_when_the_validation_loss_stalls(tmp_path):
    # an lr so small that val_loss cannot improve by min_delta: halved after epochs 2 and 3
    run = mpinn(*BASE, "--lr", 1e-6, "--epochs", 3, "--lr-schedule", "plateau", "--lr-patience", 1,
                "--lr-factor", 0.5, "--checkpoint-dir", tmp_path, ranks=1)
    assert run.returncode == 0, run.stderr
    assert saved_meta(tmp_path)["optimizer"]["hyper"]["lr"] == pytest.approx(2.5e-7)
