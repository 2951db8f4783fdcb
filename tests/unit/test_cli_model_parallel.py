"""The CLI's model-parallel strategies under mpiexec: they train like data parallelism, and bad
layouts exit 2 with one message, from rank 0, before any communication."""

import pytest
from launch import mpinn

from mpinn.cli import main


def mpinn_train(*args, ranks=2):
    return mpinn("train", "--epochs", 1, *args, ranks=ranks)


def final_loss(run) -> str:
    assert run.returncode == 0, run.stderr
    return run.stdout.split("test loss")[1].split()[0]


def test_pipeline_and_tensor_strategies_train_to_the_same_model():
    pipeline = mpinn_train("--strategy", "pipeline", "--stages", 2, "--micro-batches", 8)
    tensor = mpinn_train("--grid", "tensor=2", "--schedule", "gpipe")
    assert "grid parallel over 2 rank(s)" in tensor.stdout
    assert final_loss(pipeline) == final_loss(tensor)


@pytest.mark.parametrize("args, ranks, message", [
    (["--strategy", "pipeline"], 3, "cannot split a model with 2 layers that hold parameters into "
                                    "3 pipeline stages; choose 1 or 2 stages"),
    (["--strategy", "tensor", "--hidden", 31], 2, "[31] are not divisible by 2 tensor-parallel ranks; "
                                                  "choose 1 or 31 ranks"),
])
def test_layouts_the_model_cannot_take_exit_2_with_one_message(args, ranks, message):
    run = mpinn_train(*args, ranks=ranks)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.count(message) == 1 and run.stderr.count("mpinn: error") == 1, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("args, message", [
    (["--strategy", "pipeline", "--stages", "3"], "3 pipeline stages need 3 ranks but the job has 1"),
    (["--grid", "data=2,pipeline=2"], "has 2 x 2 x 1 = 4 ranks but the job has 1"),
    (["--grid", "data=1", "--strategy", "tensor"], "--grid goes with --strategy grid"),
    (["--strategy", "pipeline", "--schedule", "zigzag"], "argument --schedule: invalid choice: 'zigzag'"),
])
def test_layouts_the_world_cannot_take_exit_2_in_process(capsys, args, message):
    assert main(["train", "--epochs", "1", *args]) == 2
    assert message in capsys.readouterr().err
