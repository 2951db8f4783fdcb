"""mpinn.keras in one process: Keras' defaults and return types, layers, summary, files, the
lazy ``import mpinn as tf``, and an error naming each unsupported Keras feature."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mpinn as tf
import mpinn.nn
from mpinn.errors import ConfigError, UnsupportedFeature
from mpinn.keras import Input, Sequential, layers, models
from mpinn.keras.callbacks import Callback

PACKAGE = Path(__file__).resolve().parents[2] / "mpinn"
RNG = np.random.default_rng(0)
X = RNG.normal(size=(70, 5)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def classifier(**kwargs):
    model = Sequential([layers.Dense(8, activation="relu", input_shape=(5,)),
                        layers.Dense(2, activation="softmax")], **kwargs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Steps(Callback):
    def on_train_begin(self, logs=None):
        self.seen = dict(self.params)


def test_seed_none_is_seed_zero_and_dtype_is_a_keras_string():
    assert np.array_equal(classifier().params, classifier(seed=0).params)
    assert not np.array_equal(classifier().params, classifier(seed=1).params)
    assert classifier(dtype="float64").params.dtype == np.float64


def test_fit_defaults_to_batch_32_and_returns_a_keras_history(capsys):
    model, steps = classifier(), Steps()
    history = model.fit(X, Y, epochs=2, verbose=0, callbacks=[steps], initial_epoch=0,
                        sample_weight=None)  # Keras arguments at their defaults are accepted
    assert steps.seen["steps"] == 3 and steps.seen["epochs"] == 2  # ceil(70 / 32)
    assert history.epoch == [0, 1] and set(history.history) == {"loss", "accuracy"}
    assert capsys.readouterr().out == ""


def test_user_callbacks_are_added_to_the_progress_printer(capsys):
    steps = Steps()
    classifier().fit(X, Y, epochs=2, verbose=2, callbacks=[steps])
    assert steps.seen["epochs"] == 2
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_to_categorical_makes_keras_one_hot_rows():
    np.testing.assert_array_equal(tf.keras.utils.to_categorical([2, 0], num_classes=3),
                                  [[0, 0, 1], [1, 0, 0]])
    assert tf.keras.utils.to_categorical(np.array([1, 3])).shape == (2, 4)


def test_verbose_2_prints_one_line_per_epoch(capsys):
    classifier().fit(X, Y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]


def test_evaluate_returns_a_list_with_metrics_and_a_scalar_without():
    model = classifier()
    loss, accuracy = model.evaluate(X, Y, verbose=0)
    assert isinstance(model.evaluate(X, Y, verbose=0), list)
    assert model.evaluate(X, Y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": accuracy}
    plain = Sequential([layers.Dense(1, input_dim=5)])
    plain.compile(optimizer="sgd", loss="mse")
    assert isinstance(plain.evaluate(X, X[:, :1], verbose=0), float)


def test_predict_returns_probabilities_of_every_row():
    probs = classifier().predict(X, verbose=0)
    assert probs.shape == (70, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_input_layer_and_activation_layer_build_the_same_model():
    a = Sequential([Input(shape=(5,)), layers.Dense(8), layers.Activation("relu"),
                    layers.Dropout(0.0), layers.Dense(2, activation="softmax")])
    b = Sequential([layers.Dense(8, input_dim=5, activation="relu"), layers.Dropout(0.0),
                    layers.Dense(2, activation="softmax")])
    a.build()
    b.build()
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_the_trainable_model_exposes_what_the_loop_takes():
    model = classifier()
    assert type(model.net) is mpinn.nn.Sequential and not isinstance(model, mpinn.nn.Sequential)
    assert model.seed == model.net.seed == 0 and model.metrics == ["accuracy"]
    assert model.stop_training is False and model.head.loss is not None
    assert model.params is model.net.params and model.grads is model.net.grads
    assert model.layers is model.net.layers
    assert isinstance(model.optimizer, tf.keras.optimizers.Adam)


def test_save_and_load_model_round_trip(tmp_path):
    model = classifier()
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, Sequential)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with pytest.raises(ConfigError, match="exists; pass overwrite=True"):
        model.save(tmp_path / "model.keras", overwrite=False)


def test_get_and_set_weights_list_kernel_then_bias():
    model = classifier()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(5, 8), (8,), (8, 2), (2,)]
    model.set_weights([np.zeros_like(w) for w in weights])
    assert not model.params.any()


def test_summary_lists_layers_shapes_and_counts(capsys):
    classifier().summary()
    out = capsys.readouterr().out
    assert 'Model: "sequential"' in out
    assert "dense (Dense)" in out and "(None, 8)" in out and " 48" in out
    assert "dense_1 (Dense)" in out and "(None, 2)" in out and " 18" in out
    assert "Total params: 66 (264.00 B)" in out


def test_import_mpinn_is_light_and_tf_keras_comes_on_first_use():
    code = ("import sys, mpinn as tf; light = 'mpinn.keras' not in sys.modules and "
            "'mpi4py' not in sys.modules; tf.keras.Sequential; tf.distribute.MirroredStrategy; "
            "tf.data.Dataset; sys.exit(0 if light else 1)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_train_never_imports_the_keras_front():
    for path in (PACKAGE / "train").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            assert not any(n.startswith(("mpinn.keras", "mpinn.distribute")) for n in names + [module]), path


class PerBatch(Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


class Dataset:
    """What a tf.data pipeline looks like to fit: not an array."""


@pytest.mark.parametrize("call, message", [
    (lambda: tf.keras.layers.Conv2D(32, 3), "tf.keras.layers.Conv2D is not supported by mpinn; "
                                            "mpinn.keras.layers has Dense, Dropout"),
    (lambda: tf.keras.layers.Flatten(), "tf.keras.layers.Flatten is not supported"),
    (lambda: tf.data.Dataset.from_tensor_slices((X, Y)), "a tf.data pipeline .* is not supported "
                                                          "by mpinn; pass numpy arrays to fit"),
    (lambda: classifier().fit(Dataset()), "training on a Dataset .*tf.data pipeline.* pass numpy "
                                          "arrays x and y"),
    (lambda: tf.keras.Model(inputs=None, outputs=None), "keras.Model \\(the functional API"),
    (lambda: layers.Dense(3)(Input(shape=(4,))), "the functional API \\(calling a layer on a tensor\\)"),
    (lambda: tf.keras.datasets.mnist, "tf.keras.datasets is not supported.*mpinn.data has digits"),
    (lambda: layers.Dense(3, input_shape=(28, 28)), "Dense\\(input_shape=...\\) with shape \\(28, 28\\)"),
    (lambda: layers.Dense(3, kernel_regularizer="l2"), "Dense\\(kernel_regularizer=...\\)"),
    (lambda: classifier().compile(loss="mse", metrics=["AUC"]), "metric 'AUC' is not supported"),
    (lambda: classifier().compile(loss="mae"), "loss 'mae' is not supported"),
    (lambda: classifier().fit(X, Y, class_weight={0: 1.0}), "fit\\(class_weight=...\\)"),
    (lambda: classifier().fit(X, Y, initial_epoch=2), "fit\\(initial_epoch=...\\)"),
    (lambda: tf.distribute.MirroredStrategy(devices=["/gpu:0"]), "one replica per MPI rank"),
    (lambda: tf.distribute.TPUStrategy(), "tf.distribute.TPUStrategy is not supported"),
    (lambda: tf.distribute.MirroredStrategy().run(print), "strategy.run"),
    (lambda: tf.random.set_seed(0), "tf.random is not supported by mpinn; runs are seeded per "
                                    "model: Sequential\\(seed=...\\)"),
    (lambda: tf.GradientTape(), "tf.GradientTape is not supported.*train with model.fit"),
    (lambda: classifier().fit(X, Y, callbacks=[PerBatch()]), "PerBatch.on_train_batch_end \\(a "
                                                              "per-batch Keras hook\\).*on_step_end"),
])
def test_each_unsupported_feature_is_named_with_what_mpinn_offers(call, message):
    with pytest.raises(UnsupportedFeature, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: Sequential([layers.Dense(2, input_dim=5)]).compile(optimizer="adam"), "compile needs a loss"),
    (lambda: Sequential([layers.Dense(2, input_dim=5)]).compile(loss="sparse_categorical_crossentropy"),
     "needs a model that ends in activation='softmax'"),
    (lambda: classifier().fit(X, Y, verbose=3), "verbose must be 'auto', 0, 1 or 2"),
    (lambda: classifier().fit(X), "x and y are needed"),
    (lambda: Sequential([layers.Dense(2), Input(shape=(3,))]), "Input/InputLayer must come first"),
    (lambda: Sequential([Input(shape=(3,)), layers.Dense(2)]).build(4), "x has 4 features but the "
                                                                      "model's Input declares 3"),
    (lambda: tf.distribute.MirroredStrategy(deterministic=True, group_size=0), "group_size must be a positive integer"),
])
def test_bad_input_to_the_keras_front_names_the_problem(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
