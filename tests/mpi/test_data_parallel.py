"""Data parallelism equals one rank: run under mpiexec -n 1, 2, 3, 4 (rank-agnostic bodies).

Each rank trains the distributed model AND, alone on COMM_SELF, the one-rank reference.
"""

import numpy as np
import pytest

from mpinn.data import load_dataset, make_classification
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD, Adam
from mpinn.parallel import Communicator, DataParallel
from mpinn.train import evaluate
from steps import train_steps

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=95, n_features=6, n_classes=3, seed=4)


def make_model(optimizer):
    model = Sequential([Dense(16, input_dim=6, activation="relu"),
                        Dense(8, activation="tanh"), Dense(3, activation="softmax")], seed=11)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(strategy, optimizer, steps, batch_size, check=None, accumulation_steps=1):
    model = make_model(optimizer)
    train_steps(strategy, model, X, Y, steps, batch_size, accumulation_steps, after_step=check)
    return model


@pytest.mark.parametrize("optimizer", [lambda: Adam(lr=0.01), lambda: SGD(lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
@pytest.mark.parametrize("batch_size", [16, 10], ids=["batch16", "batch10-uneven"])
def test_n_ranks_equal_one_rank_after_50_steps(comm, optimizer, batch_size):
    """95 samples in batches of 10 or 16: uneven splits and a partial last batch included."""
    distributed = train(DataParallel(comm, bucket_mb=0.001), optimizer(), 50, batch_size,
                        check=lambda m: comm.check_identical(m.params, "parameters"))
    reference = train(DataParallel(Communicator.local()), optimizer(), 50, batch_size)
    np.testing.assert_allclose(distributed.params, reference.params, rtol=2e-5, atol=2e-6)


def test_batch_smaller_than_world_leaves_some_ranks_idle(comm):
    distributed = train(DataParallel(comm), Adam(lr=0.01), 12, 2)
    reference = train(DataParallel(Communicator.local()), Adam(lr=0.01), 12, 2)
    np.testing.assert_allclose(distributed.params, reference.params, rtol=2e-5, atol=2e-6)


def test_accumulation_over_micro_batches_equals_one_large_batch(comm):
    accumulated = train(DataParallel(comm), SGD(lr=0.1), 20, 32, accumulation_steps=3)
    reference = train(DataParallel(Communicator.local()), SGD(lr=0.1), 20, 32)
    np.testing.assert_allclose(accumulated.params, reference.params, rtol=2e-5, atol=2e-6)


def test_bucketed_overlapped_reduction_equals_one_flat_allreduce(comm):
    bucketed = DataParallel(comm, bucket_mb=0.0001)  # 26 float32: one bucket per layer
    flat = DataParallel(comm, overlap=False)
    a = train(bucketed, SGD(lr=0.1), 10, 24)
    b = train(flat, SGD(lr=0.1), 10, 24)
    assert len(bucketed.reducer.buckets) == 3 and len(flat.reducer.buckets) == 1
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6, atol=1e-7)


def test_distributed_evaluation_counts_every_sample_once(comm):
    model = make_model("adam")
    strategy = DataParallel(comm)
    strategy.setup(model)
    tally = strategy.reduce_sum(strategy.evaluate_tally(model, X, Y, batch_size=7))
    assert tally[2] == len(X)
    loss, accuracy = evaluate(model, X, Y, batch_size=7, strategy=strategy)
    ref_loss, ref_accuracy = evaluate(model, X, Y, strategy=DataParallel(Communicator.local()))
    assert loss == pytest.approx(ref_loss, rel=1e-5) and accuracy == ref_accuracy


def test_fit_is_data_parallel_by_default_under_mpiexec(comm):
    model = make_model(Adam(lr=0.01))
    history = model.fit(X, Y, epochs=3, batch_size=16, verbose=0)
    reference = make_model(Adam(lr=0.01))
    ref_history = reference.fit(X, Y, epochs=3, batch_size=16, verbose=0,
                                strategy=DataParallel(Communicator.local()))
    np.testing.assert_allclose(model.params, reference.params, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-5)
    comm.check_identical(model.params, "parameters after fit")


def test_memory_mapped_data_trains_like_arrays_in_memory(comm, tmp_path):
    path = comm.bcast_obj(str(tmp_path / "data.npz"))
    if comm.is_root:
        np.savez(path, x_train=X, y_train=Y, x_test=X[:5], y_test=Y[:5])
    comm.barrier()
    data = load_dataset(path)
    assert isinstance(data.x_train, np.memmap)
    mapped, in_memory = make_model(Adam(lr=0.01)), make_model(Adam(lr=0.01))
    mapped.fit(data.x_train, data.y_train, epochs=2, batch_size=16, verbose=0,
               strategy=DataParallel(comm))
    in_memory.fit(X, Y, epochs=2, batch_size=16, verbose=0, strategy=DataParallel(comm))
    np.testing.assert_array_equal(mapped.params, in_memory.params)
