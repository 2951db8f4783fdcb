"""The three Keras examples mpinn grew from, with only the import line changed."""

import numpy as np
import pytest

from mpinn import ConfigError
from mpinn.data import digits, make_classification, xor
from mpinn.keras import Sequential
from mpinn.keras.layers import Dense


def test_mlp_relu_softmax_adam_on_handwritten_digits():
    data = digits()
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    model = Sequential()
    model.add(Dense(32, input_dim=64, activation="relu"))  # 784 for 28x28 MNIST, 64 for 8x8
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert accuracy >= 0.95, accuracy
    probs = model.predict(x_test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(probs.argmax(axis=1) == y_test) == accuracy


def test_xor_sigmoid_mlp_with_mean_squared_error():
    x, y = xor()
    model = Sequential()
    model.add(Dense(4, input_dim=2, activation="sigmoid"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(loss="mean_squared_error", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=3000, batch_size=4, verbose=0)
    mse, accuracy = model.evaluate(x, y)
    assert mse < 0.05 and accuracy == 1.0, (mse, accuracy)
    np.testing.assert_array_equal(model.predict(x).round(), y)


def test_binary_classifier_relu_sigmoid_with_binary_crossentropy():
    x, y = make_classification(n_samples=1000, n_features=10, n_classes=2, seed=0)
    model = Sequential()
    model.add(Dense(10, input_dim=10, activation="relu"))
    model.add(Dense(10, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x[:800], y[:800], epochs=20, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[800:], y[800:])
    assert accuracy >= 0.9, accuracy


def compiled(loss="sparse_categorical_crossentropy"):
    model = Sequential([Dense(4, input_dim=3, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    return model


X3, Y3 = np.ones((6, 3), np.float32), np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("call, message", [
    (lambda: compiled().fit(X3, Y3, batch_size=0), "batch_size must be a positive integer"),
    (lambda: compiled().fit(X3, Y3, epochs=0), "epochs must be a positive integer"),
    (lambda: compiled().fit(X3, Y3, epochs=1.5), "epochs must be a positive integer"),
    (lambda: compiled().fit(X3, np.array([0, 1, 2, 3, 1, 2])), r"y must lie in \[0, 3\): found 3 at row 3"),
    (lambda: compiled().fit(np.where(np.eye(6, 3) > 0, np.nan, 1.0), Y3), "x contains 3 NaN and 0 Inf values \\(first in row 0\\)"),
    (lambda: compiled().fit(X3[:, :2], Y3), "declares input_dim=3 but receives 2 features"),
    (lambda: compiled().fit(X3, Y3[:5]), "x has 6 samples but y has 5"),
    (lambda: compiled(loss="hing"), "unknown loss 'hing'; choose one of"),
    (lambda: Sequential([Dense(2, input_dim=3)]).fit(X3, Y3), "not compiled"),
    (lambda: compiled().compile(optimizer="adamm", loss="mse"), "unknown optimizer 'adamm'"),
])
def test_bad_input_to_the_keras_front_names_the_problem(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
