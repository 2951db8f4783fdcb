"""The real CLI under mpiexec -n 2: rank 0 speaks once; bad input exits 2 with one message."""

import json

import numpy as np
import pytest
from launch import mpinn

from mpinn.export import read_safetensors


def test_train_evaluate_predict_round_trip(tmp_path):
    model, metrics = tmp_path / "model.npz", tmp_path / "metrics.jsonl"
    run = mpinn("train", "--epochs", 3, "--lr", 0.01, "--metrics", metrics, "--save", model)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("epoch 3/3") == 1 and run.stdout.count("test accuracy") == 1
    assert "over 2 rank(s)" in run.stdout
    accuracy = float(run.stdout.split("test accuracy")[1].split()[0])
    assert accuracy > 0.9
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert len(epochs) == 3 and steps, records
    assert {"step", "epoch", "loss", "accuracy", "samples_per_s", "compute_s", "comm_s"} <= set(steps[0])
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(epochs[-1])

    run = mpinn("evaluate", "--model", model)
    assert run.returncode == 0 and run.stdout.count("test accuracy") == 1
    assert float(run.stdout.split("test accuracy")[1].split()[0]) == pytest.approx(accuracy)

    out = tmp_path / "pred.npy"
    run = mpinn("predict", "--model", model, "--output", out)
    assert run.returncode == 0, run.stderr
    assert np.load(out).shape == (450, 10)

    weights = tmp_path / "model.safetensors"
    run = mpinn("export", "--model", model, "--output", weights)
    assert run.returncode == 0 and run.stdout.count("parameters written to") == 1, run.stderr
    exported = read_safetensors(weights)
    with np.load(model) as saved:
        assert exported["0.weight"].shape == (64, 64) and exported["2.bias"].shape == (10,)
        assert sum(a.size for a in exported.values()) == saved["params"].size


def test_toml_config_and_flags(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[train]\nhidden = [16]\nepochs = 1\noptimizer = "sgd"\nlr = 0.1\n')
    run = mpinn("train", "--config", config, "--batch-size", 50, ranks=1)
    assert run.returncode == 0, run.stderr
    assert "64-16-10" in run.stdout and "global batch 50" in run.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--epochs", "0"], "epochs must be a positive integer"),
    (["train", "--lr", "-1"], "lr must be a positive finite number"),
    (["train", "--batch-size", "abc"], "argument --batch-size: invalid int value: 'abc'"),
    (["train", "--learning-rate", "0.1"], "unrecognized arguments"),
    (["train", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["train", "--activation", "swish"], "argument --activation: invalid choice: 'swish'"),
    (["train", "--optimizer", "adagrad"], "argument --optimizer: invalid choice: 'adagrad'"),
    (["evaluate", "--model", "missing.npz"], "cannot read model file missing.npz"),
    (["train", "--deterministic", "--strategy", "local-sgd"],
     "--deterministic covers --strategy data, grid, pipeline, tensor and zero, not local-sgd"),
    (["train", "--strategy", "pipeline", "--deterministic", "--micro-batches", "3", "--batch-size", "256"],
     "--micro-batches 3 disagrees with --deterministic: each micro-batch is one group of --group-size "
     "128 samples, so a global batch of 256 gives 2 per data replica (1 of them); leave --micro-batches "
     "unset or set it to 2"),
    (["train", "--resume", "auto"], "resume auto needs a checkpoint directory"),
    (["train", "--watchdog", "-1"], "watchdog must be a number of seconds >= 0 (0: off)"),
    (["train", "--group-size", "0"], "--group-size must be a positive integer"),
    (["export", "--model", "missing.npz", "--output", "w.safetensors"], "cannot read model file missing.npz"),
])
def test_bad_input_exits_2_with_one_message_from_rank_0(args, message):
    run = mpinn(*args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count(message) == 1, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("mpinn: error") == 1


def test_deterministic_pipeline_takes_a_micro_batch_count_that_agrees_with_its_groups():
    run = mpinn("train", "--strategy", "pipeline", "--deterministic", "--micro-batches", "2",
                "--batch-size", "256", "--epochs", "1", "--hidden", "16,16")
    assert run.returncode == 0, run.stderr
    assert "test accuracy" in run.stdout


def test_unknown_config_key_lists_the_valid_ones(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("epochs = 1\nlearning_rate = 0.1\n")
    run = mpinn("train", "--config", config)
    assert run.returncode == 2
    assert "unknown config key 'learning_rate'; valid keys: dataset, hidden" in run.stderr
