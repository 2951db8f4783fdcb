"""One checkpoint format for every strategy and rank count: save under data parallelism over
the world, resume under a pipeline over the same ranks or alone, and stay on the one-rank
trajectory (run under mpiexec -n 1, 2, 3, 4)."""

import shutil

import numpy as np
import pytest

import mpinn.train
from mpinn.data import make_classification
from mpinn.layout import GridShape
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import Adam
from mpinn.parallel import Communicator, DataParallel, ModelParallel
from mpinn.train.checkpointing import Checkpointing

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=64, n_features=5, n_classes=3, seed=8)


def make_model():
    model = Sequential([Dense(10, input_dim=5, activation="relu"), Dense(9, activation="tanh"),
                        Dense(8, activation="relu"), Dense(3, activation="softmax")], seed=6)
    model.compile(Adam(lr=0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def own_copy(directory, tmp_path):
    return shutil.copytree(directory, tmp_path / "mine")


def fit(strategy, epochs, checkpoint=None):
    model = make_model()
    mpinn.train.fit(model, X, Y, epochs=epochs, batch_size=16, verbose=0, strategy=strategy,
                    checkpoint=checkpoint)
    return model


@pytest.mark.parametrize("resume_with", ["pipeline", "one rank"])
def test_save_under_data_parallel_resume_under_another_strategy(comm, tmp_path, resume_with):
    directory = comm.bcast_obj(str(tmp_path / "ck"))
    fit(DataParallel(comm), 2, Checkpointing(directory, every=3))
    comm.barrier()
    if resume_with == "pipeline":
        strategy = ModelParallel(comm, GridShape(pipeline=comm.size), micro_batches=2)
    else:  # every rank alone, each from its own copy (they would all write to one folder)
        strategy, directory = DataParallel(Communicator.local()), own_copy(directory, tmp_path)
    resumed = fit(strategy, 4, Checkpointing(directory, resume=True))
    straight = fit(DataParallel(Communicator.local()), 4)
    np.testing.assert_allclose(resumed.params, straight.params, rtol=2e-5, atol=2e-6)
