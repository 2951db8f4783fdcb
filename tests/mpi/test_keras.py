"""The Keras examples mpinn grew from, verbatim except their imports, and tf.distribute's scope
semantics: under mpiexec -n 1, 2, 3, 4 (rank-agnostic bodies). Each rank also trains the
one-rank reference alone (OneDeviceStrategy: COMM_SELF)."""

import numpy as np
import pytest

import mpinn as tf
from mpinn.data import digits, make_classification
from mpinn.keras.layers import Dense
from mpinn.keras.models import Sequential

pytestmark = pytest.mark.mpi

X, Y = make_classification(n_samples=1000, n_features=10, n_classes=2, seed=0)
x_train, y_train, x_test = X[:800], Y[:800], X[800:]


def binary_classifier_example():
    """The first example of the origin, as written there."""
    model = tf.keras.Sequential([
        tf.keras.layers.Dense(10, activation='relu', input_shape=(10,)),
        tf.keras.layers.Dense(10, activation='relu'),
        tf.keras.layers.Dense(1, activation='sigmoid')
    ])
    strategy = tf.distribute.MirroredStrategy()
    model.compile(optimizer='adam', loss='binary_crossentropy', metrics=['accuracy'])
    with strategy.scope():
        model.fit(x_train, y_train, epochs=10)
    predictions = model.predict(x_test)
    return model, predictions


def mnist_mlp_example(x_train, y_train):
    """The second example (input_dim 64: the 8x8 digits instead of 28x28 MNIST)."""
    model = Sequential()
    model.add(Dense(32, input_dim=64, activation='relu'))
    model.add(Dense(10, activation='softmax'))
    model.compile(loss='sparse_categorical_crossentropy',
                  optimizer=tf.keras.optimizers.Adam(learning_rate=0.01), metrics=['accuracy'])
    model.fit(x_train, y_train, epochs=20, batch_size=128, verbose=0)
    return model


def test_binary_classifier_example_reaches_090_and_equals_one_rank(comm):
    model, predictions = binary_classifier_example()
    assert np.mean((predictions[:, 0] > 0.5) == Y[800:]) >= 0.9
    comm.check_identical(model.params, "parameters")
    with tf.distribute.OneDeviceStrategy().scope():
        reference = tf.keras.Sequential([tf.keras.layers.Dense(10, activation="relu", input_shape=(10,)),
                                         tf.keras.layers.Dense(10, activation="relu"),
                                         tf.keras.layers.Dense(1, activation="sigmoid")])
        reference.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        reference.fit(x_train, y_train, epochs=10, verbose=0)
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-4, atol=1e-5)


def test_mnist_mlp_example_reaches_095_on_digits_and_equals_one_rank(comm):
    data = digits()
    model = mnist_mlp_example(data.x_train, data.y_train)
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    assert accuracy >= 0.95, accuracy
    with tf.distribute.OneDeviceStrategy().scope():
        reference = mnist_mlp_example(data.x_train, data.y_train)
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-4, atol=1e-5)


def small_model():
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="tanh", input_shape=(10,)),
                                 tf.keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fitted(x, y, scope=None, **fit):
    """A small model fitted on (x, y), built, compiled and fitted inside ``scope`` if given."""
    if scope is None:
        model = small_model()
        model.fit(x, y, epochs=2, batch_size=40, verbose=0, **fit)
        return model
    with scope.scope():
        return fitted(x, y, **fit)


def test_num_replicas_in_sync_is_the_world_size_or_one(comm):
    assert tf.distribute.MirroredStrategy().num_replicas_in_sync == comm.size
    assert tf.distribute.MultiWorkerMirroredStrategy().num_replicas_in_sync == comm.size
    assert tf.distribute.OneDeviceStrategy().num_replicas_in_sync == 1


def test_deterministic_mirrored_strategy_is_bitwise_one_rank(comm):
    world = fitted(X, Y, tf.distribute.MirroredStrategy(deterministic=True, group_size=16))
    alone = fitted(X, Y, tf.distribute.OneDeviceStrategy(deterministic=True, group_size=16))
    np.testing.assert_array_equal(world.params, alone.params)


def test_one_device_strategy_trains_each_rank_alone_on_its_own_data(comm):
    """Each rank passes different rows: alone, ranks end apart; mirrored, they agree."""
    rows = slice(100 * comm.rank, 100 * comm.rank + 200)
    alone = fitted(X[rows], Y[rows], tf.distribute.OneDeviceStrategy())
    everyone = comm.allgather_obj(alone.params)
    assert all(not np.array_equal(everyone[0], p) for p in everyone[1:])
    with tf.distribute.OneDeviceStrategy().scope():
        reference = fitted(X[rows], Y[rows])
    np.testing.assert_array_equal(alone.params, reference.params)


def test_a_model_built_in_a_scope_keeps_its_strategy_outside_it(comm):
    rows = slice(100 * comm.rank, 100 * comm.rank + 200)
    with tf.distribute.OneDeviceStrategy().scope():
        model = small_model()
    model.fit(X[rows], Y[rows], epochs=2, batch_size=40, verbose=0)
    with tf.distribute.OneDeviceStrategy().scope():
        reference = fitted(X[rows], Y[rows])
    np.testing.assert_array_equal(model.params, reference.params)


def test_the_innermost_scope_at_fit_time_wins(comm):
    with tf.distribute.OneDeviceStrategy().scope():
        model = small_model()
    with tf.distribute.MirroredStrategy().scope():
        model.fit(X[:200], Y[:200], epochs=2, batch_size=40, verbose=0)
    comm.check_identical(model.params, "parameters")
    with tf.distribute.OneDeviceStrategy().scope():
        reference = fitted(X[:200], Y[:200])
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-5, atol=1e-6)


def test_summary_under_a_pipeline_shows_what_each_rank_holds(comm):
    from mpinn.layout import GridShape
    from mpinn.parallel import ModelParallel

    model = tf.keras.Sequential([tf.keras.layers.Dense(12, activation="relu", input_shape=(10,)),
                                 tf.keras.layers.Dense(8, activation="tanh"),
                                 tf.keras.layers.Dense(6, activation="relu"),
                                 tf.keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X[:100], Y[:100], epochs=1, verbose=0,
              strategy=ModelParallel(comm, GridShape(pipeline=comm.size)))
    lines = []
    model.summary(print_fn=lines.append)  # collective under a model-parallel strategy
    assert " Total params: 304 (1.19 KB)" in lines
    if comm.rank == 0:
        held = lines[lines.index("Parameters held by each rank:") + 1:]
        assert [line.split(":")[0] for line in held] == [f" rank {r}" for r in range(comm.size)]
        assert sum(int(line.split(": ")[-1].split()[0].replace(",", "")) for line in held) == 304
    else:
        assert "Parameters held by each rank:" not in lines
