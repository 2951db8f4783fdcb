"""The trainable model: Keras' ``Sequential`` with ``compile``, ``fit``, ``evaluate``, ``predict``.

It holds mpinn's low-level Sequential as ``net`` (one flat parameter buffer, forward/backward)
and adds what training needs: ``optimizer``, ``head`` (the loss head), ``metrics``, ``seed``
and ``stop_training``; ``params`` and ``grads`` are the net's. It is THE object the training
loop (:mod:`mpinn.train`), the strategies, checkpoints and callbacks take; training runs under
the strategy of the open ``strategy.scope()`` (:mod:`mpinn.keras.distribute`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mpinn import nn
from mpinn.errors import ConfigError, UnsupportedFeature
from mpinn.keras import distribute, losses, metrics, optimizers
from mpinn.keras.layers import InputLayer
from mpinn.keras.summary import summary_lines
from mpinn.keras.unsupported import reject_options, unsupported_names
from mpinn.nn.sequential import training_head
from mpinn.parallel import default_strategy
from mpinn.train import History
from mpinn.train import evaluate as evaluate_tallies
from mpinn.train import fit as train

FIT_ONLY = ("pass numpy arrays x and y, with batch_size, epochs, validation_split or "
            "validation_data, shuffle and callbacks")
KERAS_DEFAULTS = {"initial_epoch": 0, "validation_freq": 1, "max_queue_size": 10, "workers": 1}


class Sequential:
    """``Sequential(layers=None, *, seed=None, dtype="float32")``; ``seed=None`` is seed 0, so a
    run is reproducible unless another seed is asked for."""

    def __init__(self, layers: list | None = None, *, seed: int | None = None,
                 dtype: Any = "float32", name: str | None = None) -> None:
        self.net = nn.Sequential(seed=0 if seed is None else seed, dtype=dtype)
        self.name = name or "sequential"
        self.optimizer = None
        self.head: nn.Head | None = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.distribute_strategy = distribute.current()
        self.trained_strategy = None  # the mpinn strategy of the last fit (for summary)
        self._input_width: int | None = None
        for layer in layers or ():
            self.add(layer)

    @classmethod
    def from_net(cls, net: nn.Sequential, name: str | None = None) -> "Sequential":
        """A trainable model over an existing ``net`` (compile it before fitting)."""
        model = cls(seed=net.seed, dtype=net.dtype, name=name)
        model.net = net
        return model

    @property
    def seed(self) -> int:
        """The seed of the initial parameters and of the per-epoch shuffle."""
        return self.net.seed

    @property
    def params(self) -> np.ndarray:
        """The net's parameters: one contiguous 1-D array."""
        return self.net.params

    @property
    def grads(self) -> np.ndarray:
        """The net's gradients, same layout as ``params``."""
        return self.net.grads

    @property
    def layers(self) -> list[nn.Layer]:
        return self.net.layers

    @property
    def built(self) -> bool:
        return self.net.built

    # ---- structure ---------------------------------------------------------------------
    def add(self, layer: Any) -> None:
        """Append a layer; an ``Input``/``InputLayer`` first fixes the input width."""
        if isinstance(layer, InputLayer):
            if self.layers or self._input_width is not None:
                raise ConfigError("Input/InputLayer must come first in a Sequential, and once")
            self._input_width = layer.width
            return
        if isinstance(layer, nn.Dense) and not self.layers and self._input_width is not None:
            if layer.input_dim not in (None, self._input_width):
                raise ConfigError(f"Input(shape=({self._input_width},)) disagrees with "
                                  f"Dense(input_dim={layer.input_dim})")
            layer.input_dim = self._input_width
        if not isinstance(layer, nn.Layer):
            raise UnsupportedFeature(f"adding {type(layer).__name__!r} to a Sequential",
                                     "add mpinn.keras.layers (Dense, Dropout, Activation, Input)")
        self.net.add(layer)

    def build(self, input_dim: int | None = None) -> None:
        """Allocate the parameters for ``input_dim`` features (or the declared input width)."""
        if input_dim is not None and self._input_width not in (None, input_dim):
            raise ConfigError(f"x has {input_dim} features but the model's Input declares "
                              f"{self._input_width}")
        self.net.build(input_dim if input_dim is not None else self._input_width)

    # ---- training ----------------------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                **options: Any) -> None:
        """Keras' compile: optimizer by Keras name ('adam' is Keras' Adam) or object, loss by
        Keras name or object, metrics=['accuracy']."""
        reject_options("compile", {k: v for k, v in options.items() if k != "jit_compile"},
                       "compile takes optimizer, loss and metrics")
        if loss is None:
            raise ConfigError("compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.metrics = _metric_names(metrics)
        loss = losses.get(loss)
        losses.check_head(loss, self.layers[-1] if self.layers else None)
        self.head = training_head(self.layers, loss)
        self.distribute_strategy = distribute.current() or self.distribute_strategy

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto", callbacks: list | None = None,
            validation_split: float = 0.0, validation_data: tuple | None = None,
            shuffle: bool = True, *, strategy: Any = None, on_failure: str = "abort",
            **options: Any) -> History:
        """Keras' fit: ``batch_size`` (global) 32 when omitted; returns a History.
        mpinn's additions: ``strategy=`` (an mpinn.parallel strategy; otherwise the scope's) and
        ``on_failure=`` ("abort", or "shrink": go on without a rank that dies; see
        :func:`mpinn.train.fit`)."""
        reject_options("fit", options, FIT_ONLY, KERAS_DEFAULTS)
        x, y = _arrays(x, y)
        if validation_data is not None:
            validation_data = _arrays(*validation_data[:2])
        self.trained_strategy = strategy or self._strategy()
        return train(self, x, y, epochs=epochs, batch_size=32 if batch_size is None else batch_size,
                     validation_data=validation_data, validation_split=validation_split,
                     shuffle=shuffle, strategy=self.trained_strategy,
                     callbacks=callbacks, verbose=_verbose(verbose, 1), on_failure=on_failure)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: int | str = "auto", return_dict: bool = False, *, strategy: Any = None,
                 **options: Any) -> float | list[float] | dict[str, float]:
        """Keras' evaluate: the loss, or ``[loss, accuracy]`` when metrics were compiled."""
        reject_options("evaluate", options, "pass numpy arrays x and y", KERAS_DEFAULTS)
        x, y = _arrays(x, y)
        strategy = strategy or self._strategy()
        result = evaluate_tallies(self, x, y, batch_size=batch_size or 32, strategy=strategy)
        values = dict(zip(["loss", *self.metrics], np.atleast_1d(result).tolist()))
        if _verbose(verbose, 1) and strategy.comm.is_root:
            print("  ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
        if return_dict:
            return values
        return list(values.values()) if self.metrics else values["loss"]

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = "auto",
                **options: Any) -> np.ndarray:
        """Keras' predict: outputs as a numpy array (probabilities after softmax/sigmoid);
        every rank computes them for all of x. ``verbose`` is accepted and prints nothing."""
        reject_options("predict", options, "pass a numpy array x", KERAS_DEFAULTS)
        x, _ = _arrays(x, None, need_y=False)
        _verbose(verbose, 1)
        batch_size = batch_size or 32
        outs = [self.net.forward(x[i:i + batch_size], training=False).copy()
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.empty((0, self.net.output_dim), self.net.dtype)

    def _strategy(self):
        """The mpinn strategy of the innermost open scope, else of the scope the model was
        built or compiled in, else the default (data parallel over the launch)."""
        chosen = distribute.current() or self.distribute_strategy
        return chosen.parallel if chosen is not None else default_strategy()

    # ---- inspection and files ----------------------------------------------------------
    def summary(self, print_fn: Any = None, **options: Any) -> None:
        """Keras-like table of layers, output shapes and parameter counts (printed by rank 0;
        ``print_fn`` is called on every rank)."""
        reject_options("summary", {k: v for k, v in options.items() if k != "line_length"},
                       "summary takes print_fn")
        lines = summary_lines(self, self.trained_strategy)
        if print_fn is None:
            from mpinn.parallel import Communicator

            comm = self.trained_strategy.comm if self.trained_strategy else Communicator.world()
            if not comm.is_root:
                return
            print_fn = print
        for line in lines:
            print_fn(line)

    def save(self, filepath: str | os.PathLike, overwrite: bool = True,
             params: np.ndarray | None = None) -> None:
        """Architecture and weights in one .npz (atomically), read back by ``load_model``."""
        if not overwrite and os.path.exists(filepath):
            raise ConfigError(f"{filepath} exists; pass overwrite=True or choose another path")
        self.net.save(filepath, params=params)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of each layer's arrays (kernel, then bias), as Keras lists them."""
        return [array.copy() for array in self.net.named_params().values()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        views = list(self.net.named_params().values())
        if len(weights) != len(views) or any(np.shape(w) != v.shape for w, v in zip(weights, views)):
            raise ConfigError(f"set_weights needs {len(views)} arrays of shapes "
                              f"{[v.shape for v in views]}")
        for view, array in zip(views, weights):
            view[...] = array


class Model:
    """The functional API and subclassed models are not part of mpinn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedFeature("keras.Model (the functional API or a subclassed model)",
                                 "build the model with mpinn.keras.Sequential([...]) of Dense, "
                                 "Dropout and Activation layers")


def load_model(filepath: str | os.PathLike, compile: bool = True) -> Sequential:
    """A Sequential written by ``save`` (or ModelCheckpoint); compile it again before fitting."""
    return Sequential.from_net(nn.Sequential.load(filepath))


def _metric_names(given: Any) -> list[str]:
    return metrics.names([given] if isinstance(given, str) else given)


def _verbose(verbose: int | str, auto: int) -> int:
    """Keras' verbose: 'auto', 0 (silent), 1 (progress) or 2 (one line per epoch)."""
    if verbose == "auto":
        return auto
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ConfigError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _arrays(x: Any, y: Any, need_y: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """numpy arrays from x and y; a tf.data pipeline, a generator or a dict is unsupported."""
    for value in (x, y):
        if value is not None and not isinstance(value, (np.ndarray, list, tuple)):
            raise UnsupportedFeature(f"training on a {type(value).__name__} (a tf.data pipeline, "
                                     f"a generator or a dict)", FIT_ONLY)
    if x is None or (need_y and y is None):
        raise ConfigError("x and y are needed, as numpy arrays: model.fit(x, y, ...)")
    return np.asarray(x), None if y is None else np.asarray(y)


__getattr__ = unsupported_names("tf.keras.models", "mpinn.keras.models has Sequential and "
                                "load_model")
