"""One source of hyperparameters and one clipping, under every strategy: run under mpiexec -n 1..4.

Every optimizer copy a strategy steps (the model's optimizer, a ZeRO shard's twin, a stage's or
a tensor slice's, a server's) records the lr it used at each step; whatever changes the model's
optimizer (a schedule per epoch or per step, a callback setting ``optimizer.lr``) must reach
every copy at the same step. Where a strategy is equivalent to one rank, the loss history and
the clipped training equal one rank's, computed on COMM_SELF by each rank.
"""

import numpy as np
import pytest

import mpinn.train
from mpinn.data import make_classification
from mpinn.layout import GridShape
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD, StepLR
from mpinn.parallel import Communicator, DataParallel, LocalSGD, ModelParallel, ZeroDataParallel
from mpinn.parallel.async_ps import AsyncParameterServer
from mpinn.train.callbacks import Callback

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

X, Y = make_classification(n_samples=60, n_features=6, n_classes=3, seed=5)
EPOCHS, BATCH = 3, 24  # 3 steps an epoch: 24, 24, 12 samples
STEPS_PER_EPOCH = 3


class RecordingSGD(SGD):
    """SGD that records (copy, lr) at every update; twins share the list (copy.copy)."""

    def _update(self, params, grads, scratch, work):
        self.used.append((id(self), self.lr))
        super()._update(params, grads, scratch, work)


def recording_sgd(**settings):
    optimizer = RecordingSGD(**settings)
    optimizer.used = []
    return optimizer


STRATEGIES = {  # name: (strategy over comm, equivalent to one rank)
    "data": (lambda comm: DataParallel(comm), True),
    "zero1": (lambda comm: ZeroDataParallel(comm, stage=1), True),
    "zero2": (lambda comm: ZeroDataParallel(comm, stage=2), True),
    "pipeline": (lambda comm: ModelParallel(comm, GridShape(pipeline=comm.size), 2), True),
    "tensor": (lambda comm: ModelParallel(comm, GridShape(tensor=comm.size)), True),
    "grid": (lambda comm: ModelParallel(comm, GridShape(data=2, pipeline=2)), True),
    "async-s0": (lambda comm: AsyncParameterServer(comm, staleness=0, servers=2 if comm.size >= 4 else 1),
                 True),
    "async-s2": (lambda comm: AsyncParameterServer(comm, staleness=2, servers=2 if comm.size >= 4 else 1),
                 False),
    "local-sgd-1": (lambda comm: LocalSGD(comm, sync_every=1), True),
    "local-sgd-3": (lambda comm: LocalSGD(comm, sync_every=3), False),
}


def make_strategy(name, comm):
    if name == "grid" and comm.size != 4:
        pytest.skip(f"a 2 x 2 grid needs 4 ranks, the job has {comm.size}")
    return STRATEGIES[name][0](comm)


def build(optimizer):
    model = Sequential([Dense(12, input_dim=6, activation="relu"), Dense(8, activation="tanh"),
                        Dense(24, activation="relu"), Dense(3, activation="softmax")], seed=3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class HalveAtEpochEnd(Callback):
    """What a Keras-style callback does: set the model optimizer's lr between epochs."""

    def __init__(self, model):
        self.model = model

    def on_epoch_end(self, epoch, values):
        self.model.optimizer.lr *= 0.5


def fit(model, strategy, change=None):
    """``change``: None, "epoch" or "step" (a halving StepLR counted so), or "callback"."""
    schedule = StepLR(model.optimizer, 1, 0.5, per=change) if change in ("epoch", "step") else None
    callbacks = [HalveAtEpochEnd(model)] if change == "callback" else []
    return mpinn.train.fit(model, X, Y, epochs=EPOCHS, batch_size=BATCH, strategy=strategy, verbose=0,
                           callbacks=callbacks, lr_schedule=schedule)


def expected_lrs(change, base):
    steps = np.arange(EPOCHS * STEPS_PER_EPOCH)
    halvings = steps if change == "step" else steps // STEPS_PER_EPOCH
    return base * 0.5 ** halvings


@pytest.mark.parametrize("change", ["epoch", "step", "callback"])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_changed_lr_reaches_every_optimizer_copy_at_every_step(comm, name, change):
    strategy = make_strategy(name, comm)  # clipping on too: every strategy's clipping runs (no hang)
    momentum = {"momentum": 0.9} if name[:5] != "local" else {}
    model = build(recording_sgd(lr=0.2, global_clipnorm=0.5, **momentum))
    fit(model, strategy, change)
    copies = {}
    for copy, lr in model.optimizer.used:
        copies.setdefault(copy, []).append(lr)
    is_async_worker = name.startswith("async") and comm.size > 1 and comm.rank >= strategy.servers
    assert len(copies) == (0 if is_async_worker else 1)
    for used in copies.values():
        np.testing.assert_allclose(used, expected_lrs(change, 0.2), rtol=1e-12)
    assert comm.allreduce_obj(len(copies)) >= 1


EQUIVALENT = [name for name, (_, equivalent) in STRATEGIES.items() if equivalent]


def sgd_for(name, **settings):
    momentum = {} if name.startswith("local") else {"momentum": 0.9}
    return SGD(lr=0.2, **momentum, **settings)


@pytest.mark.parametrize("name", EQUIVALENT)
def test_loss_history_with_a_per_step_schedule_equals_one_rank(comm, name):
    history = fit(build(sgd_for(name)), make_strategy(name, comm), "step")
    reference = fit(build(sgd_for(name)), DataParallel(Communicator.local()), "step")
    np.testing.assert_allclose(history.history["loss"], reference.history["loss"], rtol=1e-5)
    assert len(history.history["loss"]) == EPOCHS


CLIPPING = [{"clipnorm": 0.05}, {"global_clipnorm": 0.1}, {"clipvalue": 0.01}]


@pytest.mark.parametrize("clip", CLIPPING, ids=lambda clip: next(iter(clip)))
@pytest.mark.parametrize("name", EQUIVALENT)
def test_clipping_equals_one_rank(comm, name, clip):
    if name.startswith("local") and comm.size > 1:
        pytest.skip("local SGD clips each replica's own gradient: one rank's result only at one rank")
    model = build(sgd_for(name, **clip))
    history = fit(model, make_strategy(name, comm))
    reference = build(sgd_for(name, **clip))
    reference_history = fit(reference, DataParallel(Communicator.local()))
    np.testing.assert_allclose(model.params, reference.params, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(history.history["loss"], reference_history.history["loss"], rtol=1e-5)
    unclipped = build(sgd_for(name))
    fit(unclipped, DataParallel(Communicator.local()))
    assert not np.allclose(unclipped.params, reference.params, rtol=1e-3)  # the clipping acted


def test_deterministic_zero_clips_to_the_same_bits_at_any_rank_count(comm):
    model = build(SGD(lr=0.2, momentum=0.9, clipnorm=0.05))
    fit(model, ZeroDataParallel(comm, stage=2, deterministic=True, group_size=8))
    alone = build(SGD(lr=0.2, momentum=0.9, clipnorm=0.05))
    fit(alone, ZeroDataParallel(Communicator.local(), stage=2, deterministic=True, group_size=8))
    np.testing.assert_array_equal(model.params, alone.params)
