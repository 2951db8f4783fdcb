"""Keras' callbacks under mpiexec -n 1, 2, 3, 4: decisions alike on every rank, files from rank 0,
and best weights kept and put back under data, ZeRO, pipeline and tensor parallelism.

A scripted ``score`` (written into the logs by a callback placed before the one tested) makes
each decision known in advance, whatever the training does.
"""

import csv
import math

import numpy as np
import pytest

from mpinn.callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler,
                             ModelCheckpoint, ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from mpinn.data import make_classification
from mpinn.keras import Sequential, layers, models, optimizers
from mpinn.layout import GridShape
from mpinn.parallel import Communicator, DataParallel, ModelParallel, ZeroDataParallel
from mpinn.train import fit

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=60, n_features=6, n_classes=3, seed=5)
STRATEGIES = {
    "data": lambda comm: DataParallel(comm),
    "zero": lambda comm: ZeroDataParallel(comm, stage=2),
    "pipeline": lambda comm: ModelParallel(comm, GridShape(pipeline=comm.size), 2),
    "tensor": lambda comm: ModelParallel(comm, GridShape(tensor=comm.size)),
}


def deep_model(lr=0.01):
    """Four Dense layers: up to four pipeline stages; hidden widths 12 and 24 split over 1..4."""
    model = Sequential([layers.Dense(12, input_dim=6, activation="relu"),
                        layers.Dense(8, activation="tanh"), layers.Dense(24, activation="relu"),
                        layers.Dense(3, activation="softmax")], seed=3)
    model.compile(optimizer=optimizers.Adam(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Scores(Callback):
    """Writes ``scores[epoch]`` into the logs as ``score`` and keeps the whole state of each epoch."""

    def __init__(self, scores):
        self.scores, self.states = scores, []

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]
        self.states.append(self.take_state())


def run(comm, strategy="data", epochs=6, callbacks=(), model=None, **kwargs):
    model = model or deep_model()
    history = fit(model, X, Y, epochs=epochs, batch_size=13, verbose=0,
                  strategy=STRATEGIES[strategy](comm), callbacks=list(callbacks), **kwargs)
    return model, history


def root_params(comm, state):
    """Rank 0's gathered parameters, on every rank."""
    return comm.bcast_obj(state.params if state is not None else None)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_early_stopping_stops_alike_and_restores_the_best_weights(comm, strategy):
    scores = Scores([3, 1, 2, 2, 2, 2])
    stopper = EarlyStopping(monitor="score", mode="min", patience=2, restore_best_weights=True)
    model, history = run(comm, strategy, callbacks=[scores, stopper])
    assert history.epoch == [0, 1, 2, 3] and stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    assert comm.allgather_obj(len(history.epoch)) == [4] * comm.size
    np.testing.assert_array_equal(model.params, root_params(comm, scores.states[1]))
    last = root_params(comm, scores.states[3])
    assert not np.array_equal(model.params, last)


def test_early_stopping_on_a_missing_key_names_the_logged_ones(comm):
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss' but the logs hold loss, "
                                         "accuracy; pass validation_data or validation_split"):
        run(comm, epochs=1, callbacks=[EarlyStopping()])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_model_checkpoint_saves_the_best_model_from_rank_0(comm, strategy, tmp_path):
    scores = Scores([3, 1, 2, 0.5, 4])
    saver = ModelCheckpoint(tmp_path / "best-{epoch:02d}.keras", monitor="score", mode="min",
                            save_best_only=True)
    run(comm, strategy, epochs=5, callbacks=[scores, saver])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == (["best-01.keras", "best-02.keras", "best-04.keras"] if comm.rank == 0 else [])
    if comm.rank == 0:
        best = models.load_model(tmp_path / "best-04.keras")
        np.testing.assert_array_equal(best.params, scores.states[3].params)


def test_model_checkpoint_every_epoch_overwrites_one_file(comm, tmp_path):
    model, _ = run(comm, epochs=2, callbacks=[ModelCheckpoint(tmp_path / "last.keras")],
                   validation_split=0.2)
    if comm.rank == 0:
        np.testing.assert_array_equal(models.load_model(tmp_path / "last.keras").params, model.params)


class StopOnLastRank(Callback):
    """Sets stop_training on the last rank only, at its ``at``-th logging window."""

    def __init__(self, at):
        self.at, self.windows = at, []

    def on_step_end(self, record):
        self.windows.append(record["step"])
        if len(self.windows) == self.at and self.strategy.comm.rank == self.strategy.comm.size - 1:
            self.model.stop_training = True


@pytest.mark.parametrize("strategy", ["data", "pipeline"])
def test_stop_training_on_one_rank_stops_every_rank_at_the_same_step(comm, strategy):
    stopper = StopOnLastRank(at=3)
    model, history = run(comm, strategy, epochs=5, callbacks=[stopper], log_every=2)
    assert comm.allgather_obj(stopper.windows) == [[2, 4, 6]] * comm.size
    assert history.epoch == [0, 1] and model.stop_training  # 5 steps an epoch: step 6 is in the 2nd
    comm.check_identical(model.params, "parameters")


def test_reduce_lr_on_plateau_lowers_the_rate_alike_on_every_rank(comm):
    scores = Scores([1, 2, 2, 2, 2, 2])
    reducer = ReduceLROnPlateau(monitor="score", mode="min", factor=0.5, patience=2)
    model, history = run(comm, callbacks=[scores, reducer])
    assert history.history["learning_rate"] == [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025]
    assert model.optimizer.learning_rate == 0.0025
    assert comm.allgather_obj(history.history["learning_rate"])[0] == history.history["learning_rate"]


def test_reduce_lr_on_plateau_keeps_to_min_lr_and_cooldown(comm):
    scores = Scores([1, 2, 2, 2, 2, 2])
    reducer = ReduceLROnPlateau(monitor="score", factor=0.1, patience=1, cooldown=2, min_lr=0.0005)
    _, history = run(comm, callbacks=[scores, reducer])
    assert history.history["learning_rate"] == [0.01, 0.01, 0.001, 0.001, 0.0005, 0.0005]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_learning_rate_scheduler_acts_alike_on_n_ranks_and_on_one(comm, strategy):
    def schedule(epoch, lr):
        return 0.02 * 0.5 ** epoch

    model, history = run(comm, strategy, epochs=3, callbacks=[LearningRateScheduler(schedule)])
    assert history.history["learning_rate"] == [0.02, 0.01, 0.005]
    reference = deep_model()
    fit(reference, X, Y, epochs=3, batch_size=13, verbose=0, strategy=DataParallel(Communicator.local()),
        callbacks=[LearningRateScheduler(lambda epoch: 0.02 * 0.5 ** epoch)])
    np.testing.assert_allclose(model.params, reference.params, rtol=2e-5, atol=2e-6)
    constant = deep_model(lr=0.02)
    fit(constant, X, Y, epochs=3, batch_size=13, verbose=0, strategy=DataParallel(Communicator.local()))
    assert not np.allclose(model.params, constant.params)


def test_csv_logger_writes_one_row_per_epoch_from_rank_0(comm, tmp_path):
    path = tmp_path / "log.csv"
    _, history = run(comm, epochs=3, callbacks=[CSVLogger(path)], validation_split=0.2)
    if comm.rank != 0:
        assert not path.exists()
        return
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == history.history["val_loss"]


def test_tensorboard_event_files_read_back_with_tensorboard(comm, tmp_path):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra: pip install 'mpinn[tensorboard]'")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    board = TensorBoard(tmp_path / "logs", update_freq="batch")
    _, history = run(comm, epochs=3, callbacks=[board], validation_split=0.2, log_every=2)
    if comm.rank != 0:
        assert not (tmp_path / "logs").exists()
        return
    for run_name, prefix in (("train", ""), ("validation", "val_")):
        events = accumulator.EventAccumulator(str(tmp_path / "logs" / run_name))
        events.Reload()
        for name in ("loss", "accuracy"):
            scalars = events.Scalars(f"epoch_{name}")
            assert [s.step for s in scalars] == [0, 1, 2]
            np.testing.assert_allclose([s.value for s in scalars], history.history[prefix + name],
                                       rtol=1e-6)
    train_events = accumulator.EventAccumulator(str(tmp_path / "logs" / "train"))
    train_events.Reload()
    assert [s.step for s in train_events.Scalars("batch_loss")] == [2, 4, 6, 8, 10, 12]


def test_terminate_on_nan_stops_every_rank_at_the_same_window(comm):
    model = Sequential([layers.Dense(1, input_dim=6)], seed=1)
    model.compile(optimizer=optimizers.SGD(learning_rate=1e12), loss="mse")
    target = np.linspace(-1, 1, len(X), dtype=np.float32)[:, None]
    steps = Scores([0] * 20)
    history = fit(model, X * 100, target, epochs=20, batch_size=13, verbose=0, log_every=1,
                  strategy=DataParallel(comm), callbacks=[TerminateOnNaN(), steps])
    assert model.stop_training and len(history.epoch) < 20
    assert not math.isfinite(history.history["loss"][-1])
    assert comm.allgather_obj(len(history.epoch)) == [len(history.epoch)] * comm.size
