"""The three Keras examples mpinn grew from, with only the import line changed."""

import numpy as np

from mpinn.data import digits, make_classification, xor
from mpinn.nn import Dense, Sequential


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
