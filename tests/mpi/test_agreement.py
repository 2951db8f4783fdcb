"""The agreement step and the non-finite guard under mpiexec -n 1..4 (rank-agnostic bodies):
every rank raises alike, and a skipped step is undone on every rank and counted."""

import numpy as np
import pytest

import mpinn.train
from mpinn.data import make_classification
from mpinn.errors import ConfigError, Diverged
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import Adam
from mpinn.parallel import DataParallel, ZeroDataParallel
from mpinn.train import Callback

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=64, n_features=5, n_classes=3, seed=2)


def make_model():
    model = Sequential([Dense(8, input_dim=5, activation="relu"), Dense(3, activation="softmax")], seed=3)
    model.compile(Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_one_rank_with_other_data_makes_every_rank_raise_naming_it(comm):
    if comm.size == 1:
        pytest.skip("needs two ranks or more")
    x = X[:40] if comm.rank == comm.size - 1 else X
    y = Y[:40] if comm.rank == comm.size - 1 else Y
    with pytest.raises(ConfigError, match=rf"rank\(s\) {comm.size - 1} were given other arguments "
                                          r"to fit than rank 0 \(x, y differ: rank 0 has x \('shape \(64, 5\)'"):
        make_model().fit(x, y, epochs=1, batch_size=8, strategy=DataParallel(comm), verbose=0)


def test_bad_data_on_one_rank_makes_every_rank_raise_its_message(comm):
    x = X.copy()
    if comm.rank == comm.size - 1:
        x[3, 1] = np.nan
    ranks = "" if comm.size == 1 else rf" \(on rank\(s\) {comm.size - 1}; the others passed\)"
    with pytest.raises(ConfigError, match=r"x contains 1 NaN and 0 Inf values \(first in row 3\).*" + ranks):
        make_model().fit(x, Y, epochs=1, batch_size=8, strategy=DataParallel(comm), verbose=0)


def test_evaluate_agrees_too(comm):
    model = make_model()
    n = 30 if comm.rank == comm.size - 1 and comm.size > 1 else 64
    if comm.size == 1:
        assert len(model.evaluate(X[:n], Y[:n], strategy=DataParallel(comm))) == 2
        return
    with pytest.raises(ConfigError, match="were given other arguments to evaluate than rank 0"):
        model.evaluate(X[:n], Y[:n], strategy=DataParallel(comm))


class PoisonStep:
    """A strategy wrapper whose step ``bad`` leaves a NaN gradient on the last rank only."""

    def __init__(self, inner, bad_steps):
        self.inner, self.bad_steps, self.steps = inner, set(bad_steps), 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, model, x, y, batch, accumulation_steps=1):
        self.steps += 1
        if self.steps in self.bad_steps and self.inner.comm.rank == self.inner.comm.size - 1:
            x = x.astype(np.float64).copy()
            x[batch] = np.inf
        return self.inner.train_step(model, x, y, batch, accumulation_steps)


class Records(Callback):
    def __init__(self):
        self.records = []

    def on_step_end(self, record):
        self.records.append(record)


@pytest.mark.parametrize("make", [DataParallel, ZeroDataParallel], ids=["data", "zero"])
def test_skip_undoes_bad_steps_on_every_rank_and_counts_them(comm, make):
    poisoned, log = make_model(), Records()
    mpinn.train.fit(poisoned, X, Y, epochs=2, batch_size=8, strategy=PoisonStep(make(comm), {6, 9, 10}),
                    callbacks=[log], log_every=4, on_nonfinite="skip")
    assert np.isfinite(poisoned.params).all()
    assert [r["skipped_steps"] for r in log.records] == [0, 1, 3, 3]
    comm.check_identical(poisoned.params, "parameters after skipped steps")


def test_stop_raises_diverged_naming_the_step_on_every_rank(comm):
    model = make_model()
    with pytest.raises(Diverged, match="training diverged at step 3"):
        model.fit(X, Y, epochs=2, batch_size=8, strategy=PoisonStep(DataParallel(comm), {3}),
                  verbose=0)


def test_ten_skipped_steps_in_a_row_stop(comm):
    with pytest.raises(Diverged, match="10 steps in a row up to step 12"):
        mpinn.train.fit(make_model(), X, Y, epochs=3, batch_size=8, verbose=0, on_nonfinite="skip",
                        strategy=PoisonStep(DataParallel(comm), range(3, 30)))


def test_terminate_on_nan_stops_as_keras_does_and_saves_nothing_non_finite(comm, tmp_path):
    from mpinn.callbacks import TerminateOnNaN
    from mpinn.train.checkpoint import list_checkpoints, read_checkpoint
    from mpinn.train.checkpointing import Checkpointing

    folder = comm.bcast_obj(str(tmp_path) if comm.is_root else None)
    model = make_model()
    mpinn.train.fit(model, X, Y, epochs=2, batch_size=8, strategy=PoisonStep(DataParallel(comm), {3}),
                    verbose=0, callbacks=[TerminateOnNaN()],
                    checkpoint=Checkpointing(folder, every=1, keep=10))
    assert model.stop_training
    saved = [read_checkpoint(path) for path in list_checkpoints(folder)]
    assert sorted(c.progress.step for c in saved) == [1, 2]
    assert all(np.isfinite(c.params).all() for c in saved)
