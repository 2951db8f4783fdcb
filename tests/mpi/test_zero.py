"""ZeRO equals plain data parallelism: run under mpiexec -n 1, 2, 3, 4 (rank-agnostic bodies).

The model has 251 parameters, which 2, 3 and 4 do not divide: every run has uneven slices.
"""

import hashlib

import numpy as np
import pytest

from mpinn.data import make_classification
from mpinn.errors import ConfigError
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD, Adam
from mpinn.parallel import Communicator, DataParallel
from mpinn.parallel.sharding import state_bytes
from mpinn.parallel.zero import ZeroDataParallel
from steps import train_steps

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

X, Y = make_classification(n_samples=90, n_features=6, n_classes=3, seed=5)


def make_model(optimizer):
    model = Sequential([Dense(16, input_dim=6, activation="relu"), Dense(8, activation="tanh"),
                        Dense(3, activation="softmax")], seed=3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(strategy, optimizer, steps=30, batch_size=14):
    model = make_model(optimizer)
    train_steps(strategy, model, X, Y, steps, batch_size)
    return model


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("optimizer", [lambda: Adam(lr=0.01), lambda: SGD(lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_zero_equals_data_parallel_and_shards_optimizer_state(comm, stage, optimizer):
    zero = ZeroDataParallel(comm, stage=stage, bucket_mb=0.0001)
    sharded = train(zero, optimizer())
    plain = train(DataParallel(Communicator.local()), optimizer())
    np.testing.assert_allclose(sharded.params, plain.params, rtol=2e-5, atol=2e-6)
    comm.check_identical(sharded.params, "parameters after ZeRO training")

    whole, bytes_per_param = state_bytes(plain.optimizer), plain.grads.itemsize * len(plain.optimizer.state)
    held = comm.allgather_obj(zero.memory_bytes(sharded))
    optimizer_state = [h["optimizer_state"] for h in held]
    assert sum(optimizer_state) == whole  # the slices partition the one-rank state: ~1/N each
    assert max(optimizer_state) - min(optimizer_state) <= bytes_per_param
    reduced = [h["reduced_gradient"] for h in held]
    if stage == 1:
        assert reduced == [plain.grads.nbytes] * comm.size
    else:
        assert sum(reduced) == plain.grads.nbytes and max(reduced) - min(reduced) <= plain.grads.itemsize


def test_full_state_is_the_one_rank_layout_and_loads_back(comm):
    zero = ZeroDataParallel(comm)
    model = train(zero, Adam(lr=0.01), steps=10)
    reference = train(DataParallel(Communicator.local()), Adam(lr=0.01), steps=10)
    state = zero.full_state(model)
    if comm.is_root:
        params, optimizer_state = state
        expected = reference.optimizer.state_dict()
        assert optimizer_state["steps"] == expected["steps"] and optimizer_state["type"] == "Adam"
        for name, array in expected["state"].items():
            np.testing.assert_allclose(optimizer_state["state"][name], array, rtol=2e-5, atol=1e-7)
    params, optimizer_state = comm.bcast_obj(state)

    resumed = ZeroDataParallel(comm)
    fresh = make_model(Adam(lr=0.01))
    resumed.setup(fresh)
    resumed.load_full_state(fresh, params, optimizer_state)
    again = resumed.full_state(fresh)
    if comm.is_root:
        np.testing.assert_array_equal(again[0], params)
        for name, array in optimizer_state["state"].items():
            np.testing.assert_array_equal(again[1]["state"][name], array)


def test_fit_with_zero_matches_fit_with_data_parallel(comm):
    zero_model, plain_model = make_model(Adam(lr=0.01)), make_model(Adam(lr=0.01))
    history = zero_model.fit(X, Y, epochs=2, batch_size=16, verbose=0, validation_data=(X, Y),
                             strategy=ZeroDataParallel(comm, stage=2))
    reference = plain_model.fit(X, Y, epochs=2, batch_size=16, verbose=0, validation_data=(X, Y),
                                strategy=DataParallel(Communicator.local()))
    np.testing.assert_allclose(zero_model.params, plain_model.params, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(history.history["val_loss"], reference.history["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("optimizer", [lambda: Adam(lr=0.01), lambda: SGD(lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
@pytest.mark.parametrize("stage", [1, 2])
def test_deterministic_zero_is_bitwise_deterministic_data_parallel_on_one_rank(comm, stage, optimizer):
    sharded = train(ZeroDataParallel(comm, stage=stage, deterministic=True, group_size=4),
                    optimizer(), steps=100)
    alone = train(DataParallel(Communicator.local(), deterministic=True, group_size=4), optimizer(),
                  steps=100)
    assert hashlib.sha256(sharded.params.tobytes()).digest() == hashlib.sha256(alone.params.tobytes()).digest()


def test_bad_stage_is_rejected_before_any_communication(comm):
    with pytest.raises(ConfigError, match="zero_stage must be 1 or 2, got 3"):
        ZeroDataParallel(comm, stage=3)
