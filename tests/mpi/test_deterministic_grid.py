"""Deterministic mode on a data x pipeline grid: every micro-batch is one fixed group of
samples, so for a fixed pipeline layout the parameters and the logs are bitwise the same at
any data-parallel degree (run under mpiexec -n 1..4; a comparison needs 2 x stages ranks)."""

import hashlib

import pytest

import mpinn.train
from mpinn.data import make_classification
from mpinn.keras import Sequential
from mpinn.layout import GridShape
from mpinn.nn import Dense
from mpinn.optim import Adam
from mpinn.parallel import ModelParallel

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

X, Y = make_classification(n_samples=97, n_features=6, n_classes=3, seed=5)


def fit(comm, grid: GridShape):
    model = Sequential([Dense(12, input_dim=6, activation="tanh"), Dense(8, activation="relu"),
                        Dense(3, activation="softmax")], seed=3)
    model.compile(Adam(lr=0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    strategy = ModelParallel(comm, grid, deterministic=True, group_size=3)
    history = mpinn.train.fit(model, X, Y, epochs=4, batch_size=20, verbose=0, strategy=strategy)
    return hashlib.sha256(model.params.tobytes()).hexdigest(), history.history


@pytest.mark.parametrize("stages", [1, 2])
def test_parameters_and_logs_bitwise_equal_at_data_degrees_1_and_2(comm, stages):
    """Global batch 20 in groups of 3: 7 groups, split 4 and 3 over two replicas; the last
    group and the last batch are short."""
    if comm.size < 2 * stages:
        pytest.skip(f"needs {2 * stages} ranks for data=2 x pipeline={stages}")
    results = {}
    for data in (1, 2):
        inside = comm.rank < data * stages
        group = comm.split(0 if inside else 1)
        if inside:
            results[data] = fit(group, GridShape(data=data, pipeline=stages))
        group.free()
    if comm.rank == 0:
        assert results[1] == results[2]
