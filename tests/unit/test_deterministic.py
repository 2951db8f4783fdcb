"""Deterministic mode in one process: the grid, the group cut, the two paths to the same bits,
and the accuracy it keeps."""

import numpy as np
import pytest

import mpinn.parallel.exact as exact_module
import mpinn.train
from mpinn import ConfigError
from mpinn.data import digits, make_classification
from mpinn.keras import Sequential
from mpinn.nn import Dense, layers
from mpinn.optim import SGD, Adam
from mpinn.parallel import Communicator, DataParallel
from mpinn.parallel.exact import ExactGradients, group_bounds, on_loss_grid
from mpinn.nn.step import accumulate_gradients, call_pitch, rows_independent_of_call


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
    model.compile(SGD(), loss="sparse_categorical_crossentropy")
    x, y, batch = np.full((4, 3), 100.0), np.array([0, 1, 0, 1]), np.arange(4)
    model.net.zero_grad()
    accumulate_gradients(model.net, model.head, x, y, len(batch))
    plain = model.grads.copy()
    exact = ExactGradients(Communicator.local(), group_size=2)
    exact.setup(model.net)
    exact.exponent = 60  # far too fine a grid for gradients near 50
    exact.accumulate(model.net, model.head, x, y, batch)
    assert exact.used_exponent < 60
    np.testing.assert_allclose(exact.to_gradients(exact.sums, model.grads), plain, rtol=1e-12)


def test_group_size_must_be_positive():
    with pytest.raises(ConfigError, match="group_size must be a positive integer"):
        DataParallel(Communicator.local(), deterministic=True, group_size=0)


def test_accuracy_on_digits_within_half_a_point_of_the_normal_mode():
    data = digits()
    accuracies = []
    for deterministic in (False, True):
        model = Sequential([Dense(32, input_dim=64, activation="relu"),
                            Dense(10, activation="softmax")], seed=0)
        model.compile(Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        strategy = DataParallel(Communicator.local(), deterministic=deterministic, group_size=8)
        model.fit(data.x_train, data.y_train, epochs=15, batch_size=32, verbose=0, strategy=strategy)
        accuracies.append(mpinn.train.evaluate(model, data.x_test, data.y_test, strategy=strategy)[1])
    assert accuracies[1] >= 0.93 and abs(accuracies[0] - accuracies[1]) <= 0.005, accuracies


def small_model(dtype=np.float32):
    model = Sequential([Dense(16, input_dim=6, activation="relu"), Dense(8, activation="tanh"),
                        Dense(3, activation="softmax")], seed=3, dtype=dtype)
    model.compile(SGD(), loss="sparse_categorical_crossentropy")
    return model


def rowwise_matmul(a, b, out=None):
    """A product whose rows cannot depend on how many rows share the call."""
    rows = np.stack([row @ b for row in a]) if len(a) else np.empty((0, b.shape[1]), a.dtype)
    if out is None:
        return rows
    out[...] = rows
    return out


def call_dependent_matmul(a, b, out=None):
    """A product whose every row changes with the number of rows sharing the call."""
    rows = rowwise_matmul(a, b) + len(a) * 1e-3
    if out is None:
        return rows
    out[...] = rows
    return out


class Assembler:
    """Takes the pieces of ``backward_by_rows`` into one gradient per part."""

    def __init__(self, size, parts, scratch_size):
        self.scratch = np.empty(scratch_size)
        self.grads, self.done, self.seen = np.zeros((parts, size)), [], []

    def take(self, offset, k, values):
        assert np.shares_memory(values, self.scratch)
        self.grads[k, offset:offset + values.size] = values
        self.seen.append((offset, k))

    def layer_done(self, offset):
        self.done.append(offset)


def test_backward_by_rows_gives_each_part_the_gradient_of_its_rows_alone_in_pieces():
    model, x, y = small_model(np.float64), *make_classification(n_samples=10, n_features=6, n_classes=3, seed=1)
    parts = [slice(0, 4), slice(4, 10)]
    out = model.net.forward(x, stop=model.head.stop)
    model.head.loss.forward(out, y)
    model.net.zero_grad()
    taker = Assembler(model.grads.size, len(parts), scratch_size=20)  # layers wider: several pieces
    model.net.backward_by_rows(model.head.loss.backward(), parts, taker)
    assert not model.grads.any()  # the pieces went to the taker only
    offsets = [model.net.layer_offsets[i] for i in model.net.param_layers]
    assert taker.done == offsets[::-1]
    assert [k for _, k in taker.seen] == [0, 1] * (len(taker.seen) // 2)  # every part of a piece in turn
    for k, rows in enumerate(parts):
        alone = small_model(np.float64)
        alone.net.zero_grad()
        out = alone.net.forward(x[rows], stop=alone.head.stop)
        alone.head.loss.forward(out, y[rows])
        alone.net.backward(alone.head.loss.backward() * (rows.stop - rows.start) / len(x), need_input_grad=False)
        np.testing.assert_allclose(taker.grads[k], alone.grads, rtol=1e-12, atol=1e-15)


def test_sums_are_the_same_bits_on_any_split_where_a_products_rows_depend_on_its_call(monkeypatch):
    """Each product runs in one call per group, so a rank's share of the groups does not change
    any group's bits: the grid sums of two ranks' spans add up to one rank's."""
    monkeypatch.setattr(layers, "matmul", call_dependent_matmul)
    x, y = make_classification(n_samples=23, n_features=6, n_classes=3, seed=2)

    def sums(spans):
        return span_sums(x, y, 5, spans)[0]

    one_rank = sums([(0, 23)])
    assert np.array_equal(sums([(0, 10), (10, 23)]), one_rank)
    # one call for all of a rank's rows (what the check allows where rows do not depend on it):
    monkeypatch.setattr(exact_module, "rows_independent_of_call", lambda model, groups: True)
    assert not np.array_equal(sums([(0, 10), (10, 23)]), sums([(0, 23)]))


def span_sums(x, y, group_size, spans):
    """The grid sums of the groups of each span (one span a rank), added up, at exponent 20;
    and the ExactGradients that made them."""
    model = small_model()
    model.net.build(x.shape[1])
    exact = ExactGradients(Communicator.local(), group_size=group_size)
    exact.setup(model.net)
    total = np.zeros(model.grads.size, np.int64)
    for span in spans:
        exact.exponent = 20
        exact.accumulate(model.net, model.head, x, y, np.arange(len(x)), span=span)
        assert exact.used_exponent == 20
        total += exact.sums
    return total, exact


def position_matmul(a, b, out=None):
    """A product whose rows change with their position modulo 6 in the call (as OpenBLAS's
    Haswell kernel's do)."""
    rows = rowwise_matmul(a, b)
    rows += (np.arange(len(a)) % 6)[:, None].astype(rows.dtype) * rows.dtype.type(1e-3)
    if out is None:
        return rows
    out[...] = rows
    return out


def test_call_pitch_is_the_group_size_where_rows_do_not_depend_on_the_call_else_a_fitting_one(monkeypatch):
    model = small_model()
    model.net.build(6)
    monkeypatch.setattr(layers, "matmul", rowwise_matmul)
    assert call_pitch(model.net, 128) == 128
    monkeypatch.setattr(layers, "matmul", position_matmul)
    assert call_pitch(model.net, 128) == 132  # the first even count from 128 that 6 divides
    assert call_pitch(model.net, 32) == 32  # 1/16 more (34) is not enough: a call per group
    monkeypatch.setattr(layers, "matmul", call_dependent_matmul)
    assert call_pitch(model.net, 128) == 128


def test_groups_padded_to_the_pitch_share_one_call_and_keep_their_bits(monkeypatch):
    """Groups of 64 in slots of 66 rows: one call for a rank's groups, the same bits whether
    a group shares it with three others or one (the short last group padded alike)."""
    monkeypatch.setattr(layers, "matmul", position_matmul)
    x, y = make_classification(n_samples=202, n_features=6, n_classes=3, seed=6)
    totals = []
    for spans in ([(0, 202)], [(0, 128), (128, 202)]):
        total, exact = span_sums(x, y, 64, spans)
        assert exact._pitch == 66 and all(exact._rowwise.values())
        totals.append(total)
    assert np.array_equal(*totals)


def test_a_short_group_fills_a_slot_of_its_own_size(monkeypatch):
    """A batch smaller than a group (or an epoch's short last group) is not padded to the pitch."""
    calls = []
    monkeypatch.setattr(layers, "matmul", lambda a, b, out=None: calls.append(len(a)) or np.matmul(a, b, out=out))
    monkeypatch.setattr(exact_module, "call_pitch", lambda net, group_size: 66)
    x, y = make_classification(n_samples=10, n_features=6, n_classes=3, seed=6)
    model = small_model()
    model.net.build(6)
    exact = ExactGradients(Communicator.local(), group_size=64)
    exact.setup(model.net)
    exact.accumulate(model.net, model.head, x, y, np.arange(10))
    assert 66 not in calls and 10 in calls  # forward and input gradients on its 10 rows


def test_rows_independent_of_call_sees_a_product_whose_rows_depend_on_the_call(monkeypatch):
    model = small_model()
    model.net.build(6)
    groups = [(0, 3), (3, 6), (6, 8)]
    monkeypatch.setattr(layers, "matmul", rowwise_matmul)
    assert rows_independent_of_call(model.net, groups)
    monkeypatch.setattr(layers, "matmul", lambda a, b, out=None: rowwise_matmul(a, b, out) + len(a) * 1e-6)
    assert not rows_independent_of_call(model.net, groups)


def test_one_call_and_a_call_per_group_give_the_same_bits_where_rows_do_not_depend_on_the_call(monkeypatch):
    """Where rows do not depend on the call, both ways are the same arithmetic: equal sums."""
    monkeypatch.setattr(layers, "matmul", rowwise_matmul)
    x, y = make_classification(n_samples=23, n_features=6, n_classes=3, seed=2)
    sums = []
    for verdict in (False, True):
        monkeypatch.setattr(exact_module, "rows_independent_of_call", lambda model, groups: verdict)
        model = small_model()
        exact = ExactGradients(Communicator.local(), group_size=5)
        model.net.build(6)
        exact.setup(model.net)
        exact.accumulate(model.net, model.head, x, y, np.arange(23))
        assert exact.sums.dtype == np.int32
        sums.append(exact.sums.copy())
    assert np.array_equal(sums[0], sums[1])


def test_grid_sums_equal_the_sum_of_each_group_on_the_grid():
    x, y = make_classification(n_samples=12, n_features=6, n_classes=3, seed=4)
    model = small_model()
    exact = ExactGradients(Communicator.local(), group_size=4)
    model.net.build(6)
    exact.setup(model.net)
    exact.accumulate(model.net, model.head, x, y, np.arange(12))
    expected = np.zeros(model.grads.size, np.int64)
    for lo in range(0, 12, 4):
        model.net.zero_grad()
        accumulate_gradients(model.net, model.head, x[lo:lo + 4], y[lo:lo + 4], 12)
        expected += np.trunc(model.grads * np.float32(2.0 ** exact.used_exponent)).astype(np.int64)
    assert np.array_equal(exact.sums, expected)
    assert np.abs(expected).max() * 3 < 2**31  # the grid leaves room for every group's term


def test_a_non_finite_gradient_reaches_the_guard_as_nan_not_as_integers():
    x, y = make_classification(n_samples=8, n_features=6, n_classes=3, seed=4)
    x[3, 0] = np.inf
    model = small_model()
    exact = ExactGradients(Communicator.local(), group_size=4)
    model.net.build(6)
    exact.setup(model.net)
    exact.accumulate(model.net, model.head, x, y, np.arange(8))
    assert np.isnan(exact.to_gradients(exact.sums, model.grads)).all()
