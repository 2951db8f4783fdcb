"""Deterministic mode: bitwise the same parameters and logs at any rank count (run under
mpiexec -n 1, 2, 3, 4; each rank also trains the one-rank reference on COMM_SELF)."""

import hashlib
import shutil

import pytest

import mpinn.train
from mpinn.data import make_classification
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD, Adam
from mpinn.parallel import Communicator, DataParallel
from mpinn.train.checkpointing import Checkpointing

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=97, n_features=6, n_classes=3, seed=5)


def sha(array):
    return hashlib.sha256(array.tobytes()).hexdigest()


def make_model(optimizer):
    model = Sequential([Dense(12, input_dim=6, activation="tanh"), Dense(8, activation="relu"),
                        Dense(3, activation="softmax")], seed=3)
    model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(comm, optimizer, epochs, checkpoint=None):
    model = make_model(optimizer)
    strategy = DataParallel(comm, deterministic=True, group_size=3)
    history = mpinn.train.fit(model, X, Y, epochs=epochs, batch_size=20, verbose=0, strategy=strategy,
                              checkpoint=checkpoint)
    return model, history


@pytest.mark.parametrize("optimizer", [lambda: Adam(lr=0.01), lambda: SGD(lr=0.1, momentum=0.9)],
                         ids=["adam", "sgd-momentum"])
def test_parameters_and_logs_bitwise_equal_to_one_rank_after_100_steps(comm, optimizer):
    """97 samples, global batch 20 in groups of 3: uneven groups, a partial last batch."""
    distributed, history = fit(comm, optimizer(), epochs=20)  # 5 steps an epoch: 100 steps
    reference, ref_history = fit(Communicator.local(), optimizer(), epochs=20)
    assert sha(distributed.params) == sha(reference.params)
    assert history.history == ref_history.history
    comm.check_identical(distributed.params, "parameters")


def test_resume_at_another_rank_count_stays_bitwise_equal(comm, tmp_path):
    directory = comm.bcast_obj(str(tmp_path / "ck"))
    fit(comm, Adam(lr=0.01), epochs=3, checkpoint=Checkpointing(directory, every=4))
    comm.barrier()
    mine = shutil.copytree(directory, tmp_path / "mine")  # every rank resumes alone
    resumed, _ = fit(Communicator.local(), Adam(lr=0.01), epochs=6,
                     checkpoint=Checkpointing(mine, resume=True))
    straight, _ = fit(Communicator.local(), Adam(lr=0.01), epochs=6)
    assert sha(resumed.params) == sha(straight.params)
