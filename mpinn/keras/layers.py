"""Keras' layer names over mpinn's layers: ``Dense``, ``Dropout``, ``Activation``, ``Input``.

They are mpinn's own layers (``mpinn.nn``) with Keras' argument names; nothing is computed
twice. Data is flat, (samples, features): a layer that needs other shapes (Conv2D, LSTM,
Flatten ...) is reported as unsupported, and so is calling a layer on a tensor (the
functional API).
"""

from __future__ import annotations

from typing import Any

from mpinn import nn
from mpinn.nn.layers import make_activation
from mpinn.errors import ConfigError, UnsupportedFeature
from mpinn.keras.unsupported import reject_options, unsupported_names

SUPPORTED = ("mpinn.keras.layers has Dense, Dropout, Activation, Input and InputLayer over flat "
             "(samples, features) data; stack them in mpinn.keras.Sequential([...])")
FUNCTIONAL = ("the functional API (calling a layer on a tensor)", "build the model with "
              "mpinn.keras.Sequential([Input(shape=(n,)), Dense(...), ...])")


def _width(shape: Any, owner: str) -> int:
    """The feature count of a Keras shape such as ``(10,)``; anything but 1-D is unsupported."""
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) != 1 or not isinstance(shape[0], int):
        raise UnsupportedFeature(f"{owner} with shape {shape!r}", "mpinn takes flat data: give "
                                 "shape=(features,) and reshape x to (samples, features)")
    return int(shape[0])


class _NotCallable:
    def __call__(self, *args: Any, **kwargs: Any):
        raise UnsupportedFeature(*FUNCTIONAL)


class Dense(_NotCallable, nn.Dense):
    """Keras' Dense(units, activation, use_bias, kernel_initializer, input_shape | input_dim)."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros", *,
                 input_shape: tuple[int, ...] | None = None, input_dim: int | None = None,
                 name: str | None = None, **options: Any) -> None:
        reject_options("Dense", options, "mpinn's Dense takes units, activation, use_bias, "
                       "kernel_initializer and input_dim or input_shape")
        if bias_initializer != "zeros":
            raise UnsupportedFeature(f"Dense(bias_initializer={bias_initializer!r})",
                                     "biases start at zero")
        if input_shape is not None:
            width = _width(input_shape, "Dense(input_shape=...)")
            if input_dim is not None and input_dim != width:
                raise ConfigError(f"Dense: input_dim={input_dim} disagrees with input_shape={input_shape}")
            input_dim = width
        super().__init__(units, activation=activation, input_dim=input_dim, use_bias=use_bias,
                         kernel_initializer=kernel_initializer)
        self.name = name


class Dropout(_NotCallable, nn.Dropout):
    """Keras' Dropout(rate, seed): inverted dropout in training, identity in inference."""

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 name: str | None = None) -> None:
        reject_options("Dropout", {"noise_shape": noise_shape}, "dropout masks every element")
        super().__init__(rate, seed=seed)
        self.name = name


def Activation(activation: str | None, name: str | None = None) -> nn.Layer:
    """Keras' Activation layer: 'relu', 'sigmoid', 'tanh', 'softmax', 'leaky_relu' or 'linear'."""
    return make_activation(activation) or nn.Layer()


class InputLayer(_NotCallable):
    """The input's width, ``InputLayer(shape=(n,))``: the first layer of a Sequential; it holds
    no parameters."""

    def __init__(self, shape: tuple[int, ...] | None = None, batch_size: int | None = None,
                 dtype: Any = None, *, input_shape: tuple[int, ...] | None = None,
                 name: str | None = None, **options: Any) -> None:
        reject_options("InputLayer", options, "it takes shape=(features,)")
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ConfigError("InputLayer needs shape=(features,)")
        self.width, self.name = _width(shape, "Input"), name


def Input(shape: tuple[int, ...] | None = None, batch_size: int | None = None, dtype: Any = None,
          name: str | None = None, **options: Any) -> InputLayer:
    """Keras' Input: in mpinn, the first entry of a Sequential that fixes the input width."""
    return InputLayer(shape, batch_size, dtype, name=name, **options)


__getattr__ = unsupported_names("tf.keras.layers", SUPPORTED)
