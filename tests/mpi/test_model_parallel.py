"""Pipeline, tensor and grid parallelism equal one rank: run under mpiexec -n 1, 2, 3, 4.

Every test is rank-agnostic: the grid is derived from the world size (P = size, T = size, or
a 2 x 2 grid skipped unless there are 4 ranks). Each rank trains the model-parallel model and,
alone on COMM_SELF, the one-rank reference, then compares parameters and optimizer state.
"""

import numpy as np
import pytest

from mpinn.data import make_classification
from mpinn.errors import ConfigError
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD, Adam
from mpinn.parallel import Communicator, DataParallel, ModelParallel
from mpinn.layout import GridShape
from steps import train_steps

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=60, n_features=6, n_classes=3, seed=5)


def deep_model(optimizer):
    """Four Dense layers: up to four pipeline stages; hidden widths 12 and 24 split over 1..4."""
    model = Sequential([Dense(12, input_dim=6, activation="relu"), Dense(8, activation="tanh"),
                        Dense(24, activation="relu"), Dense(3, activation="softmax")], seed=3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(strategy, optimizer, steps=4, batch_size=13):
    model = deep_model(optimizer)
    tally = train_steps(strategy, model, X, Y, steps, batch_size)
    return model, strategy.reduce_sum(tally)


def assert_equals_one_rank(strategy, optimizer=lambda: Adam(lr=0.01), **kwargs):
    model, tally = train(strategy, optimizer(), **kwargs)
    reference, ref_tally = train(DataParallel(Communicator.local()), optimizer(), **kwargs)
    np.testing.assert_allclose(model.params, reference.params, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(tally, ref_tally, rtol=1e-5)
    state, ref_state = model.optimizer.state_dict(), reference.optimizer.state_dict()
    assert state["steps"] == ref_state["steps"]
    for name, array in ref_state["state"].items():
        np.testing.assert_allclose(state["state"][name], array, rtol=2e-5, atol=1e-7)
    strategy.comm.check_identical(model.params, "parameters after finish")


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("micro_batches", [1, 3, 8])
def test_pipeline_over_every_rank_equals_one_rank(comm, schedule, micro_batches):
    strategy = ModelParallel(comm, GridShape(pipeline=comm.size), micro_batches, schedule)
    assert_equals_one_rank(strategy)


def test_pipeline_with_user_boundaries_and_sgd_momentum(comm):
    boundaries = (2, 4, 6)[:comm.size - 1]  # layers: dense relu dense tanh dense relu dense softmax
    strategy = ModelParallel(comm, GridShape(pipeline=comm.size), 4, "1f1b", boundaries=boundaries)
    assert_equals_one_rank(strategy, lambda: SGD(lr=0.1, momentum=0.9))


def test_pipeline_balanced_by_measured_time(comm):
    assert_equals_one_rank(ModelParallel(comm, GridShape(pipeline=comm.size), 2, balance="time"))


def test_pipeline_evaluation_counts_every_sample_once(comm):
    model = deep_model("adam")
    strategy = ModelParallel(comm, GridShape(pipeline=comm.size), 2)
    strategy.setup(model)
    tally = strategy.reduce_sum(strategy.evaluate_tally(model, X, Y, batch_size=7))
    reference = DataParallel(Communicator.local())
    ref_tally = reference.evaluate_tally(model, X, Y, batch_size=7)
    assert tally[2] == len(X) and tally[1] == ref_tally[1]
    assert tally[0] == pytest.approx(ref_tally[0], rel=1e-5)


def test_pipeline_stage_holds_its_share_of_the_parameters(comm):
    model = deep_model("adam")
    strategy = ModelParallel(comm, GridShape(pipeline=comm.size))
    strategy.setup(model)
    sizes = comm.allgather_obj(strategy.part.model.params.size)
    assert sum(sizes) == model.params.size
    assert strategy.part.model.params.nbytes == sizes[comm.rank] * model.params.itemsize


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_tensor_parallel_over_every_rank_equals_one_rank(comm, micro_batches):
    strategy = ModelParallel(comm, GridShape(tensor=comm.size), micro_batches)
    assert_equals_one_rank(strategy)
    names = [type(layer).__name__ for layer in strategy.part.model.layers]
    pairs = 2 if comm.size > 1 else 0
    assert names.count("ColumnParallelDense") == names.count("RowParallelDense") == pairs


@pytest.mark.parametrize("grid", [GridShape(2, 2, 1), GridShape(1, 2, 2), GridShape(2, 1, 2)],
                         ids=["data2-pipeline2", "pipeline2-tensor2", "data2-tensor2"])
def test_two_by_two_grid_equals_one_rank(comm, grid):
    if comm.size != 4:
        pytest.skip(f"a 2 x 2 grid needs 4 ranks, the job has {comm.size}")
    assert_equals_one_rank(ModelParallel(comm, grid, micro_batches=3, schedule="gpipe"),
                           lambda: SGD(lr=0.1, momentum=0.9))


def test_checkpoint_state_round_trips_through_the_one_rank_layout(comm):
    model, _ = train(ModelParallel(comm, GridShape(pipeline=comm.size), 2), Adam(lr=0.01))
    strategy = ModelParallel(comm, GridShape(tensor=comm.size))
    fresh = deep_model(Adam(lr=0.01))
    strategy.setup(fresh)
    params, state = comm.bcast_obj((model.params, model.optimizer.state_dict()))
    strategy.load_full_state(fresh, params, state)
    gathered = strategy.full_state(fresh)
    if comm.is_root:
        np.testing.assert_array_equal(gathered[0], model.params)
        for name, array in model.optimizer.state_dict()["state"].items():
            np.testing.assert_array_equal(gathered[1]["state"][name], array)


def test_bad_grids_fail_on_every_rank_before_any_message(comm):
    with pytest.raises(ConfigError, match=f"= {comm.size + 1} ranks but the job has {comm.size}"):
        ModelParallel(comm, GridShape(pipeline=comm.size + 1))
    model = deep_model("adam")
    too_many = ModelParallel(Communicator.local(), GridShape(), boundaries=(1, 2, 3, 4))
    with pytest.raises(ConfigError, match="1 pipeline stages need 0 boundaries"):
        too_many.setup(model)
