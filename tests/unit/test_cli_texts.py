"""The CLI teaches: typed flags and switches, defaults in the help, --version, did-you-mean,
messages that name flags as typed, old spellings with a notice, and one vocabulary in plan."""

import json

import pytest

from mpinn.cli import main
from mpinn.registry import NOTICES


def run(capsys, *args):
    NOTICES.clear()
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def help_text(capsys, *command):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version_names_the_mpi_library(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("mpinn 0.") and "mpi4py" in out and "MPI: " in out


def test_train_help_shows_types_choices_switches_and_defaults(capsys):
    text = " ".join(help_text(capsys, "train").split())
    assert "[--drop-last | --no-drop-last]" in text
    assert "--strategy {data,async,grid,local-sgd,pipeline,tensor,zero}" in text  # the registry's
    assert "(default 20)" in text and "default None" not in text


def test_sweep_help_lists_only_the_flags_it_accepts(capsys):
    text = help_text(capsys, "sweep")
    assert "--vary" in text and "--epochs" in text
    for rejected in ("--save", "--metrics", "--checkpoint-dir", "--resume", "--checkpoint-every",
                     "--keep-checkpoints", "--on-failure"):
        assert f"[{rejected} " not in text
        assert not any(line.startswith(f"  {rejected} ") for line in text.splitlines())


@pytest.mark.parametrize("args, message", [
    (["train", "--lrr", "0.1"], "unrecognized arguments: --lrr 0.1 (--lrr: did you mean --lr?) "
                                "(see mpinn train --help)"),
    (["train", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["train", "--resume", "auto"], "--resume auto needs a checkpoint directory"),
    (["train", "--batch-size", "abc"], "argument --batch-size: invalid int value: 'abc'"),
    (["train", "--strategy", "magic"], "argument --strategy: invalid choice: 'magic'"),
    (["train", "--verbose", "3"], "argument --verbose: invalid choice: 3"),
    (["train", "--validation-split", "1"], "--validation-split must lie in [0, 1)"),
    ([], "a command is needed: train, evaluate"),
    (["plot", "missing.jsonl"], "cannot read metrics log missing.jsonl"),
])
def test_errors_name_flags_as_the_user_types_them(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("mpinn: error:") == 1 and message in err, err


def test_unknown_toml_key_suggests_the_close_one(capsys, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("epoch = 1\n")
    code, _, err = run(capsys, "train", "--config", config)
    assert code == 2 and "unknown config key 'epoch' (did you mean 'epochs'?); valid keys:" in err
    assert "epochs must be" not in err


def profile(tmp_path):
    from test_plan import profile_dict

    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile_dict()))
    return path


def test_plan_speaks_train_vocabulary(capsys, tmp_path):
    code, out, err = run(capsys, "plan", "--profile", profile(tmp_path), "--hidden", "256,256",
                         "--input-dim", 64, "--num-classes", 10, "--batch-size", 512,
                         "--optimizer", "adamw", "--ranks", "1,2", "--json", tmp_path / "p.json")
    assert code == 0, err
    assert "model 64-256-256-10, global batch 512, optimizer adamw" in out
    saved = json.loads((tmp_path / "p.json").read_text())["inputs"]
    assert saved["cost_class"] == "adam" and saved["model"] == [64, 256, 256, 10]


def test_old_plan_spellings_work_with_one_notice(capsys, tmp_path):
    code, out, err = run(capsys, "plan", "--profile", profile(tmp_path), "--model", "64,32,10",
                         "--batch", 256, "--ranks", "1,2")
    assert code == 0
    assert "model 64-32-10, global batch 256" in out
    assert "mpinn: notice: --batch is now --batch-size" in err
    assert "mpinn: notice: --model is now --input-dim, --hidden and --num-classes" in err


@pytest.mark.parametrize("optimizer, momentum, cost", [("sgd", 0, "sgd"), ("sgd", 0.9, "momentum"),
                                                       ("rmsprop", 0, "momentum"), ("adam", 0, "adam")])
def test_plan_maps_each_optimizer_to_its_state_size(optimizer, momentum, cost):
    from mpinn.cli.planning import cost_class

    assert cost_class(optimizer, momentum) == cost


def test_plan_plot_without_matplotlib_exits_2_before_any_work(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "plan", "--profile", profile(tmp_path), "--plot", tmp_path / "p.png")
    assert code == 2 and out == "" and "pip install 'mpinn[plot]'" in err
    assert not (tmp_path / "p.png").exists()


def test_flag_choices_are_the_names_the_math_registers():
    from mpinn import config
    from mpinn.nn.layers import ACTIVATIONS
    from mpinn.optim import OPTIMIZERS

    assert set(config.OPTIMIZERS) == set(OPTIMIZERS)
    assert set(config.ACTIVATIONS) == set(ACTIVATIONS) - {"softmax"}
