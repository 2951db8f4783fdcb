"""Deterministic mode preempted mid-epoch on two ranks and resumed on all of them (2 -> 2, 3, 4
under mpiexec -n 2, 3, 4) ends in the same bits as an uninterrupted run. The gradients are
small (inputs scaled by 1e-8), so the fixed-point grid of a resumed run must be the saved one:
a grid guessed afresh truncates them differently."""

import os
import signal

import pytest

import mpinn.train
from mpinn.data import make_classification
from mpinn.errors import Preempted
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import Adam
from mpinn.parallel import DataParallel, ZeroDataParallel
from mpinn.train import Callback
from mpinn.train.checkpointing import Checkpointing

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=90, n_features=6, n_classes=3, seed=5)
X = X * 1e-8


class SignalAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, record):
        if record["step"] == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def train(strategy, epochs, checkpoint=None, callbacks=()):
    model = Sequential([Dense(12, input_dim=6, activation="tanh"), Dense(3, activation="softmax")], seed=7)
    model.compile(Adam(), loss="sparse_categorical_crossentropy")
    mpinn.train.fit(model, X, Y, epochs=epochs, batch_size=16, verbose=0, log_every=1, strategy=strategy,
                    checkpoint=checkpoint, callbacks=list(callbacks))
    return model


@pytest.mark.parametrize("make", [DataParallel, ZeroDataParallel], ids=["data", "zero"])
def test_preempted_mid_epoch_on_two_ranks_resumed_on_all_ends_in_the_same_bits(comm, tmp_path, make):
    if comm.size < 2:
        pytest.skip("needs two ranks or more")
    exact = {"deterministic": True, "group_size": 4}
    straight = train(make(comm, **exact), epochs=2)
    folder = comm.bcast_obj(str(tmp_path) if comm.is_root else None)
    pair = comm.split(0 if comm.rank < 2 else 1)
    if comm.rank < 2:
        with pytest.raises(Preempted, match="preempted at step 9"):  # 6 steps an epoch
            train(make(pair, **exact), epochs=2, checkpoint=Checkpointing(folder, resume=False),
                  callbacks=[SignalAt(9)])
    comm.barrier()
    resumed = train(make(comm, **exact), epochs=2, checkpoint=Checkpointing(folder, resume=True))
    assert resumed.params.tobytes() == straight.params.tobytes()
