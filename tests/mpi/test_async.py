"""Asynchronous parameter servers and local SGD: run under mpiexec -n 1, 2, 3, 4.

Bodies are rank-agnostic; each distributed run is compared with one rank training alone
(``Communicator.local()``). Ranks 0..S-1 are servers, the others workers.
"""

import time

import numpy as np
import pytest

import mpinn.train
from mpinn.data import digits, make_classification
from mpinn.errors import ConfigError
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD, Adam
from mpinn.parallel import Communicator, DataParallel
from mpinn.parallel.async_ps import AsyncParameterServer
from mpinn.parallel.local_sgd import LocalSGD
from steps import train_steps

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

X, Y = make_classification(n_samples=90, n_features=6, n_classes=3, seed=7)


def make_model(optimizer, inputs=6, classes=3, hidden=16):
    model = Sequential([Dense(hidden, input_dim=inputs, activation="relu"),
                        Dense(classes, activation="softmax")], seed=2)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(strategy, optimizer, steps=24, batch_size=15):
    model = make_model(optimizer)
    train_steps(strategy, model, X, Y, steps, batch_size)
    return model


def servers_for(comm):
    return 2 if comm.size >= 4 else 1


@pytest.mark.parametrize("optimizer", [lambda: Adam(lr=0.01), lambda: SGD(lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_staleness_zero_equals_synchronous_training(comm, optimizer):
    strategy = AsyncParameterServer(comm, staleness=0, servers=servers_for(comm))
    asynchronous = train(strategy, optimizer())
    synchronous = train(DataParallel(Communicator.local()), optimizer())
    np.testing.assert_allclose(asynchronous.params, synchronous.params, rtol=2e-5, atol=2e-6)
    comm.check_identical(asynchronous.params, "parameters after finish")
    assert set(strategy.lags) <= {0}


def test_full_state_gathers_the_servers_slices(comm):
    strategy = AsyncParameterServer(comm, staleness=0, servers=servers_for(comm))
    model = train(strategy, Adam(lr=0.01), steps=6)
    reference = train(DataParallel(Communicator.local()), Adam(lr=0.01), steps=6)
    state = strategy.full_state(model)
    if comm.is_root:
        params, optimizer_state = state
        np.testing.assert_allclose(params, reference.params, rtol=2e-5, atol=2e-6)
        assert optimizer_state["steps"] == 6
        for name, array in reference.optimizer.state_dict()["state"].items():
            np.testing.assert_allclose(optimizer_state["state"][name], array, rtol=2e-5, atol=1e-7)
    else:
        assert state is None


class SlowFirstWorker(AsyncParameterServer):
    """The first worker sleeps before each step: a straggler on purpose."""

    delay = 0.03

    def train_step(self, model, *args, **kwargs):
        if self.comm.rank == self.servers:
            time.sleep(self.delay)
        return super().train_step(model, *args, **kwargs)


@pytest.mark.parametrize("staleness", [0, 3])
def test_a_slow_worker_holds_the_others_back_only_by_the_staleness_bound(comm, staleness):
    if comm.size < 3:
        pytest.skip("needs a server and two workers (3 ranks or more)")
    strategy = SlowFirstWorker(comm, staleness=staleness)
    train(strategy, SGD(lr=0.05), steps=10)
    lags = comm.allgather_obj(dict(strategy.lags))
    for rank, counted in enumerate(lags):
        if rank == strategy.servers:
            assert sum(counted.values()) == 10  # the straggler completed all its steps
        elif rank > strategy.servers:
            # a fast worker ran ahead of the slowest one by exactly the bound, never more
            assert sum(counted.values()) == 10 and max(counted) == staleness


def test_staleness_four_reaches_93_percent_on_digits(comm):
    data = digits()
    model = make_model(Adam(lr=0.003), inputs=64, classes=10, hidden=64)
    mpinn.train.fit(model, data.x_train, data.y_train, epochs=10, batch_size=32, verbose=0, log_every=10**6,
                    strategy=AsyncParameterServer(comm, staleness=4))
    loss, accuracy = model.evaluate(data.x_test, data.y_test, strategy=DataParallel(comm))
    assert accuracy >= 0.93
    comm.check_identical(model.params, "parameters after fit")


def test_local_sgd_every_step_with_plain_sgd_equals_data_parallel(comm):
    local = train(LocalSGD(comm, sync_every=1), SGD(lr=0.1))
    reference = train(DataParallel(Communicator.local()), SGD(lr=0.1))
    np.testing.assert_allclose(local.params, reference.params, rtol=2e-5, atol=2e-6)


def test_local_sgd_averages_every_k_steps_and_trains_digits(comm):
    data = digits()
    model = make_model(Adam(lr=0.003), inputs=64, classes=10, hidden=64)
    strategy = LocalSGD(comm, sync_every=8)
    history = model.fit(data.x_train, data.y_train, epochs=6, batch_size=32, verbose=0,
                        validation_data=(data.x_test, data.y_test), strategy=strategy)
    comm.check_identical(model.params, "parameters after fit")
    assert history.history["val_accuracy"][-1] >= 0.93


@pytest.mark.parametrize("make, message", [
    (lambda c: AsyncParameterServer(c, staleness=-1), "staleness must be >= 0 steps"),
    (lambda c: AsyncParameterServer(c, servers=0), "servers must be a positive integer"),
    (lambda c: LocalSGD(c, sync_every=0), "sync_every must be a positive integer"),
])
def test_bad_settings_are_rejected_before_any_communication(comm, make, message):
    with pytest.raises(ConfigError, match=message):
        make(comm)


def test_servers_must_leave_a_worker(comm):
    if comm.size == 1:
        pytest.skip("one rank is its own server and worker")
    with pytest.raises(ConfigError, match="needs at least one worker"):
        AsyncParameterServer(comm, servers=comm.size)
