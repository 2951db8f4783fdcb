"""Deterministic mode in one process: the grid, the group cut, and the accuracy it keeps."""

import numpy as np
import pytest

from mpinn import ConfigError
from mpinn.data import digits
from mpinn.nn import Dense, Sequential
from mpinn.parallel import Communicator, DataParallel
from mpinn.parallel.exact import ExactGradients, group_bounds, on_loss_grid
from mpinn.train.step import accumulate_gradients


def test_groups_are_whole_and_the_same_cut_for_any_rank_count():
    for size in (1, 2, 3, 4, 7):
        cut = [b for rank in range(size) for b in group_bounds(10, 3, rank, size)]
        assert cut == [(0, 3), (3, 6), (6, 9), (9, 10)]


def test_loss_grid_makes_sums_independent_of_order():
    rng = np.random.default_rng(0)
    parts = [on_loss_grid(np.array([v, 1.0, 3.0])) for v in rng.random(50) * 7]
    forward = np.sum(parts, axis=0)
    assert np.array_equal(forward, np.sum(parts[::-1], axis=0))
    assert np.array_equal(forward, np.sum(parts[1::2], axis=0) + np.sum(parts[::2], axis=0))


def test_gradients_that_outgrow_the_grid_are_recomputed_on_a_larger_one():
    model = Sequential([Dense(2, input_dim=3, activation="softmax")], seed=0, dtype=np.float64)
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    x, y, batch = np.full((4, 3), 100.0), np.array([0, 1, 0, 1]), np.arange(4)
    model.zero_grad()
    accumulate_gradients(model, x, y, len(batch))
    plain = model.grads.copy()
    exact = ExactGradients(Communicator.local(), group_size=2)
    exact.setup(model)
    exact.exponent = 60  # far too fine a grid for gradients near 50
    exact.accumulate(model, x, y, batch)
    assert exact.used_exponent < 60
    np.testing.assert_allclose(exact.to_gradients(exact.sums, model.grads), plain, rtol=1e-12)


def test_group_size_must_be_positive():
    with pytest.raises(ConfigError, match="group size must be a positive integer"):
        DataParallel(Communicator.local(), deterministic=True, group_size=0)


def test_accuracy_on_digits_within_half_a_point_of_the_normal_mode():
    data = digits()
    accuracies = []
    for deterministic in (False, True):
        model = Sequential([Dense(32, input_dim=64, activation="relu"),
                            Dense(10, activation="softmax")], seed=0)
        model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        strategy = DataParallel(Communicator.local(), deterministic=deterministic, group_size=8)
        model.fit(data.x_train, data.y_train, epochs=15, batch_size=32, verbose=0, strategy=strategy)
        accuracies.append(model.evaluate(data.x_test, data.y_test, strategy=strategy)[1])
    assert accuracies[1] >= 0.93 and abs(accuracies[0] - accuracies[1]) <= 0.005, accuracies
