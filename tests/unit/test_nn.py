"""nn core: gradients by finite differences (float64), flat-buffer contract, errors."""

import numpy as np
import pytest

from mpinn import ConfigError
from mpinn.nn import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Dense, Dropout, LeakyReLU,
                      MSELoss, ReLU, Sequential, Sigmoid, Softmax, Tanh, training_head)

RNG = np.random.default_rng(1234)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f() with respect to array x (modified in place)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def weighted_sum(out, weights):
    return float(np.sum(out * weights))


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.1), Sigmoid(), Tanh(), Softmax()],
                         ids=lambda l: type(l).__name__)
def test_activation_gradients(layer):
    x = RNG.normal(size=(4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the ReLU kink
    w = RNG.normal(size=(4, 5))
    layer.forward(x.copy())
    dx = layer.backward(w.copy())
    expected = numeric_grad(lambda: weighted_sum(layer.forward(x.copy()), w), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-7)


def test_dropout_gradient_with_its_mask_held_fixed():
    layer, x, w = Dropout(0.4), RNG.normal(size=(6, 5)), RNG.normal(size=(6, 5))

    def forward():
        layer.rng = np.random.default_rng(9)  # the same mask on every evaluation
        return layer.forward(x.copy(), training=True)
    forward()
    dx = layer.backward(w.copy())
    expected = numeric_grad(lambda: weighted_sum(forward(), w), x)
    np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-8)
    assert np.any(dx == 0) and np.any(dx != 0)


def test_dense_gradients_accumulate_into_flat_buffer():
    model = Sequential([Dense(3, input_dim=4)], seed=0, dtype=np.float64)
    x, w = RNG.normal(size=(6, 4)), RNG.normal(size=(6, 3))
    model.zero_grad()
    model.forward(x)
    dx = model.backward(w)
    expected_params = numeric_grad(lambda: weighted_sum(model.forward(x), w), model.params)
    expected_x = numeric_grad(lambda: weighted_sum(model.forward(x), w), x)
    np.testing.assert_allclose(model.grads, expected_params, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, expected_x, rtol=1e-6, atol=1e-8)
    model.forward(x)
    model.backward(w)
    np.testing.assert_allclose(model.grads, 2 * expected_params, rtol=1e-6, atol=1e-8)
    model.zero_grad()
    assert not model.grads.any()


@pytest.mark.parametrize("loss, pred, target", [
    (MSELoss(), RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))),
    (CrossEntropyLoss(), RNG.normal(size=(5, 4)), np.array([0, 3, 1, 2, 3])),
    (CrossEntropyLoss(), RNG.normal(size=(5, 4)), np.eye(4)[[1, 0, 2, 3, 3]]),
    (BCELoss(), RNG.uniform(0.05, 0.95, size=(5, 1)), RNG.integers(0, 2, size=(5, 1)).astype(float)),
    (BCEWithLogitsLoss(), RNG.normal(size=(5, 2)), RNG.integers(0, 2, size=(5, 2)).astype(float)),
], ids=["mse", "ce-labels", "ce-onehot", "bce", "bce-logits"])
def test_loss_gradients(loss, pred, target):
    loss.forward(pred, target)
    grad = loss.backward().copy()
    expected = numeric_grad(lambda: loss.forward(pred, target), pred)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)


def test_cross_entropy_matches_log_softmax_formula():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    value = CrossEntropyLoss().forward(logits, np.array([2, 0]))
    first = -(3.0 - np.log(np.exp(1.0) + np.exp(2.0) + np.exp(3.0)))
    assert value == pytest.approx(first / 2)  # the second row is stable: loss 0, no overflow


def test_whole_sequential_gradient_with_fused_softmax_head():
    model = Sequential(seed=3, dtype=np.float64)
    model.add(Dense(7, input_dim=5, activation="tanh"))
    model.add(Dense(6, activation="relu"))
    model.add(LeakyReLU(0.2))
    model.add(Dense(4, activation="sigmoid"))
    model.add(Dense(3, activation="softmax"))
    head = training_head(model.layers, CrossEntropyLoss())
    assert head.stop == len(model.layers) - 1
    x, y = RNG.normal(size=(8, 5)), RNG.integers(0, 3, size=8)

    def loss_value():
        return head.loss.forward(model.forward(x, stop=head.stop), y)

    model.zero_grad()
    loss_value()
    model.backward(head.loss.backward())
    np.testing.assert_allclose(model.grads, numeric_grad(loss_value, model.params),
                               rtol=1e-5, atol=1e-8)


def test_bce_after_sigmoid_is_fused_to_logits():
    model = Sequential([Dense(1, input_dim=2, activation="sigmoid")], seed=0)
    head = training_head(model.layers, BCELoss())
    assert head.stop == 1 and isinstance(head.loss, BCEWithLogitsLoss) and head.threshold == 0.0
    assert training_head(model.layers, MSELoss()).threshold == 0.5


def test_flat_buffer_layout_and_names():
    model = Sequential([Dense(8, input_dim=4), ReLU(), Dense(3, use_bias=False)], seed=0)
    named = model.named_params()
    assert list(named) == ["dense_0.W", "dense_0.b", "dense_1.W"]
    assert model.params.shape == (4 * 8 + 8 + 8 * 3,) and model.params.dtype == np.float32
    assert named["dense_0.W"].shape == (4, 8) and np.shares_memory(named["dense_0.W"], model.params)
    model.params[0] = 42.0
    assert named["dense_0.W"][0, 0] == 42.0 and model.layers[0].W[0, 0] == 42.0
    assert not named["dense_0.b"].any()  # zero bias init
    limit = np.sqrt(6 / (4 + 8))
    assert np.all(np.abs(named["dense_0.W"][1:]) <= limit)


def test_seed_makes_init_reproducible_and_dtype_is_kept():
    def make(seed, dtype=np.float64):
        return Sequential([Dense(5, input_dim=3), Dense(2)], seed=seed, dtype=dtype)
    np.testing.assert_array_equal(make(7).params, make(7).params)
    assert not np.array_equal(make(7).params, make(8).params)
    model = make(1, np.float32)
    assert model.forward(np.ones((2, 3))).dtype == np.float32


def test_forward_does_not_modify_the_callers_input():
    model = Sequential([ReLU(), Dense(2, input_dim=3), Sigmoid(), Tanh()], seed=0)
    x = np.array([[-1.0, 2.0, -3.0]], dtype=np.float32)
    before = x.copy()
    model.forward(x)
    dout = np.ones((1, 2), np.float32)
    model.backward(dout)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(dout, np.ones((1, 2)))


def test_dropout_is_seeded_scaled_and_off_at_inference():
    def run():
        model = Sequential([Dense(50, input_dim=4), Dropout(0.5)], seed=0)
        return model, model.forward(np.ones((20, 4)), training=True)
    (model, a), (_, b) = run(), run()
    np.testing.assert_array_equal(a, b)
    assert 0.3 < np.mean(a == 0) < 0.7
    clean = model.forward(np.ones((20, 4)), training=False)
    np.testing.assert_allclose(a[a != 0], 2 * clean[a != 0], rtol=1e-6)


def test_backward_reports_gradient_offsets_in_reverse_layer_order():
    model = Sequential([Dense(4, input_dim=3, activation="relu"), Dense(2)], seed=0)
    seen = []
    model.forward(np.ones((2, 3)))
    model.backward(np.ones((2, 2)), need_input_grad=False, on_grads_ready=seen.append)
    assert seen == [3 * 4 + 4, 0]


def test_save_and_load_round_trip(tmp_path):
    model = Sequential([Dense(6, input_dim=3, activation="relu"), Dropout(0.1),
                        Dense(2, activation="softmax")], seed=5)
    model.save(tmp_path / "m.npz")
    loaded = Sequential.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.params, model.params)
    x = RNG.normal(size=(4, 3))
    out = model.forward(x, training=False)
    np.testing.assert_array_equal(loaded.forward(x, training=False), out)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("method", ["compile", "fit", "evaluate", "predict"])
def test_training_methods_point_to_the_trainable_model(method):
    model = Sequential([Dense(2, input_dim=3)])
    with pytest.raises(ConfigError, match=f"nn.Sequential is the low-level model .*; {method} lives "
                                          f"on the trainable model: from mpinn.keras import Sequential"):
        getattr(model, method)("adam", loss="mse")


def built_model():
    model = Sequential([Dense(4, input_dim=3)])
    model.build()
    return model


@pytest.mark.parametrize("build, message", [
    (lambda: Sequential([Dense(4, input_dim=3), Dense(2, input_dim=5)]).build(), "input_dim=5"),
    (lambda: Sequential([Dense(4)]).params, "input width is unknown"),
    (lambda: Dense(0), "positive integer"),
    (lambda: Dense(3, activation="swish"), "unknown activation 'swish'"),
    (lambda: Sequential([Dense(4, input_dim=3)]).forward(np.ones((2, 5))), "receives 5 features"),
    (lambda: built_model().forward(np.ones((2, 5))), "x has 5 features but the model expects 3"),
    (lambda: CrossEntropyLoss().forward(np.zeros((2, 3)), np.array([0, 3])), "\\[0, 3\\)"),
    (lambda: MSELoss().forward(np.zeros((2, 3)), np.zeros((3, 3))), "do not match"),
    (lambda: Dropout(1.0), "rate"),
    (lambda: Sequential(dtype=np.int32), "float32 or float64"),
])
def test_bad_input_is_a_config_error_naming_the_problem(build, message):
    with pytest.raises(ConfigError, match=message):
        build()
