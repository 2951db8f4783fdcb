"""The sweep grid, its checks, and the new strategies' CLI, without and with mpiexec."""

import json

import pytest
from launch import mpinn

from mpinn.errors import ConfigError
from mpinn.cli.sweep import format_table, group_count, write_json
from mpinn.cli.sweep_config import make_sweep_spec


def test_the_results_json_is_written_atomically_and_synced(tmp_path, monkeypatch):
    import mpinn.io

    synced = []
    monkeypatch.setattr(mpinn.io.os, "fsync", lambda fd: synced.append(fd))
    write_json(str(tmp_path / "runs" / "sweep.json"), {"results": [1]})
    assert json.loads((tmp_path / "runs" / "sweep.json").read_text()) == {"results": [1]}
    assert len(synced) == 2 and [p.name for p in (tmp_path / "runs").iterdir()] == ["sweep.json"]


def test_every_combination_is_one_configuration_in_order():
    spec = make_sweep_spec({"epochs": 1}, {"lr": [0.1, "0.01"], "hidden": [32, [64, 16]]}, {})
    assert [(c.lr, c.hidden) for c in spec.configs] == [(0.1, (32,)), (0.1, (64, 16)),
                                                       (0.01, (32,)), (0.01, (64, 16))]
    assert all(c.epochs == 1 for c in spec.configs)
    assert spec.label(1) == {"lr": 0.1, "hidden": [64, 16]}
    assert spec.varied == {"lr": [0.1, 0.01], "hidden": [[32], [64, 16]]}


@pytest.mark.parametrize("varied, options, message", [
    ({"lrr": [0.1]}, {}, "unknown key to vary 'lrr'; valid keys: dataset, hidden"),
    ({"lr": [0.1]}, {"ranks": 2}, "unknown sweep option 'ranks'; valid keys: ranks_per_config"),
    ({"dataset": ["xor"]}, {}, "'dataset' cannot be varied"),
    ({"lr": []}, {}, "must be a non-empty list"),
    ({"lr": [-1]}, {}, "lr must be a positive finite number"),
    ({"lr": [0.1]}, {"validation_split": 0.2}, "unknown sweep option 'validation_split'"),
    ({"lr": [0.1]}, {"ranks_per_config": 0}, "ranks_per_config must be a positive integer"),
])
def test_bad_grids_are_rejected_with_the_valid_choices(varied, options, message):
    with pytest.raises(ConfigError, match=message):
        make_sweep_spec({}, varied, options)


@pytest.mark.parametrize("base, message", [
    ({"save": "m.npz"}, "sweep does not take 'save': every run would write the same file"),
    ({"resume": "auto"}, "sweep does not take 'resume': its runs write no checkpoints"),
    ({"keep_checkpoints": 2}, "sweep does not take 'keep_checkpoints': its runs write no checkpoints"),
    ({"on_failure": "shrink"}, "sweep does not take 'on_failure': its runs cannot shrink"),
])
def test_per_run_outputs_and_checkpoint_settings_are_refused(base, message):
    with pytest.raises(ConfigError, match=message):
        make_sweep_spec(base, {"lr": [0.1]}, {})


@pytest.mark.parametrize("split, message", [
    (1.5, r"validation_split must lie in \[0, 1\)"),
    (0.0, r"ranks its runs on held-out data: validation_split must lie in \(0, 1\), got 0"),
])
def test_a_sweep_needs_a_held_out_split(split, message):
    with pytest.raises(ConfigError, match=message):
        make_sweep_spec({"validation_split": split}, {"lr": [0.1]}, {})


def test_train_and_sweep_share_one_validation_split_default():
    assert make_sweep_spec({}, {"lr": [0.1]}, {}).configs[0].validation_split == 0.1


def test_a_group_size_must_divide_the_world():
    assert group_count(4, 2) == 2
    with pytest.raises(ConfigError, match="ranks_per_config 3 does not divide 4 ranks; choose 1, 2, 4"):
        group_count(4, 3)


def test_the_table_puts_the_best_run_first():
    rows = [{"config": 1, "lr": 0.1, "val_accuracy": 0.9, "val_loss": 0.3, "test_accuracy": 0.91,
             "seconds": 1.0}]
    table = format_table({"varied": {"lr": [0.1]}, "results": rows}).splitlines()
    assert table[0].split() == ["#", "config", "lr", "val_acc", "val_loss", "test_acc", "seconds"]
    assert table[1].split()[:4] == ["1", "1", "0.1000", "0.9000"]


def test_sweep_command_writes_a_sorted_table_and_json(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[train]\nepochs = 2\nhidden = [16]\n[vary]\nlr = [0.001, 0.01]\n'
                    '[sweep]\nensemble = true\n')
    out = tmp_path / "sweep.json"
    run = mpinn("sweep", "--config", grid, "--vary", "optimizer=adam", "--vary", "optimizer=rmsprop",
                "--output", out)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("ensemble of 4: test_accuracy") == 1
    result = json.loads(out.read_text())
    accuracies = [row["val_accuracy"] for row in result["results"]]
    assert len(accuracies) == 4 and accuracies == sorted(accuracies, reverse=True)
    assert result["varied"] == {"lr": [0.001, 0.01], "optimizer": ["adam", "rmsprop"]}


@pytest.mark.parametrize("args", [["--strategy", "zero", "--zero-stage", "1"],
                                  ["--strategy", "async", "--staleness", "2"],
                                  ["--strategy", "local-sgd", "--sync-every", "4"]],
                         ids=["zero", "async", "local-sgd"])
def test_train_command_runs_each_new_strategy(args):
    run = mpinn("train", "--epochs", 2, "--lr", 0.003, *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("test accuracy") == 1
    assert float(run.stdout.split("test accuracy")[1].split()[0]) > 0.85


@pytest.mark.parametrize("args, message", [
    (["train", "--strategy", "zero", "--zero-stage", "3"], "--zero-stage must be 1 or 2, got 3"),
    (["train", "--strategy", "async", "--staleness", "-1"], "staleness must be >= 0"),
    (["train", "--strategy", "async", "--servers", "2"], "needs at least one worker"),
    (["train", "--sync-every", "0"], "--sync-every must be a positive integer"),
    (["sweep", "--vary", "lr"], "--vary takes KEY=VALUE"),
    (["sweep", "--ranks-per-config", "3"], "ranks_per_config 3 does not divide 2 ranks"),
])
def test_bad_input_exits_2_with_one_message(args, message):
    run = mpinn(*args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.count(message) == 1, run.stderr
