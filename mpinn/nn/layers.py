"""Layers: forward caches what backward needs; backward ACCUMULATES into the model's flat grads.

Parameters and gradients are views into the owning Sequential's flat buffers (``bind``).
``inplace=True`` tells a layer it may overwrite the array it was given (the model passes it
only when no other layer still needs that array), which saves an allocation per step.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from mpinn.errors import ConfigError, require_positive_int, unknown_name
from mpinn.nn.init import get_initializer


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Every Dense product goes through here, so a benchmark can time the products of a step
    apart from the rest (bench/single_process.py)."""
    return np.matmul(a, b, out=out)


def matmul_by_rows(a: np.ndarray, b: np.ndarray, calls: list[slice] | None) -> np.ndarray:
    """``a @ b`` in one product call per row slice of ``calls`` (which cover ``a``'s rows), so
    each row's bits are those of its own slice's call whatever else shares the batch; in one
    call for all rows when ``calls`` is None."""
    if calls is None:
        return matmul(a, b)
    out = np.empty((len(a), b.shape[1]), np.result_type(a, b))
    for rows in calls:
        matmul(a[rows], b, out=out[rows])
    return out


class Layer:
    """Base class: a layer without parameters that passes its input through."""

    kind = "layer"
    caches_output = False  # True if backward reads this layer's own output

    def build(self, in_features: int) -> int:
        """Fix the input width; return the output width."""
        return in_features

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of this layer's parameters, in flat-buffer order."""
        return {}

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Receive views into the model's flat parameter and gradient buffers."""

    def init_params(self, rng: np.random.Generator) -> None:
        """Write initial values into the bound parameter views."""

    def mark_grads_zero(self) -> None:
        """Told by the model that its gradient views were just cleared."""

    def reset_rng(self, seed: list[int]) -> None:
        """Seed the layer's own randomness (if any) from the model's seed and its position."""

    def shared_clone(self) -> "Layer":
        """A copy over the same parameter and gradient views with its own forward cache; its
        backward always accumulates (see ``Sequential.shared_copy``)."""
        return copy.copy(self)

    def forward(self, x: np.ndarray, training: bool = True, inplace: bool = False) -> np.ndarray:
        return x

    def forward_by_calls(self, x: np.ndarray, calls: list[slice], training: bool = True,
                         inplace: bool = False) -> np.ndarray:
        """``forward`` with every product over rows in one call per row slice of ``calls``
        (see ``matmul_by_rows``). A layer without such products computes each row on its own
        already: the same as ``forward``."""
        return self.forward(x, training=training, inplace=inplace)

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 inplace: bool = False) -> np.ndarray | None:
        return dout

    def input_grad(self, dout: np.ndarray, inplace: bool = False,
                   calls: list[slice] | None = None) -> np.ndarray:
        """d loss / d input of the last forward, leaving the parameter gradients alone; products
        over rows in one call per slice of ``calls`` (as ``forward_by_calls``)."""
        return self.backward(dout, need_input_grad=True, inplace=inplace)

    def param_grad_pieces(self, dout: np.ndarray, rows: list[slice],
                          scratch: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """The parameter gradients that each ``rows[k]`` of the last forward gives on its own,
        piece by piece, each piece computed into ``scratch`` (1-D, at least as long as the
        widest parameter's last dimension) and overwritten by the next: yields (offset into
        the layer's flat parameters, k, values), pieces in increasing offset, every k of a
        piece before the next piece. A piece's bits depend only on its rows and the sizes."""
        return iter(())

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__}


class Dense(Layer):
    """y = x @ W + b with W of shape (in, out).

    ``activation`` is a Keras convenience: Sequential expands ``Dense(n, activation="relu")``
    into this layer followed by a ReLU layer; Dense itself is only the affine map.
    """

    kind = "dense"

    def __init__(self, units: int, activation: str | None = None, input_dim: int | None = None,
                 use_bias: bool = True, kernel_initializer: str = "glorot_uniform") -> None:
        require_positive_int("Dense units", units)
        if activation is not None:
            make_activation(activation)
        get_initializer(kernel_initializer)
        self.units = int(units)
        self.activation = activation
        self.input_dim = input_dim
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self._grads_zero = False

    def build(self, in_features: int) -> int:
        if self.input_dim is not None and self.input_dim != in_features:
            raise ConfigError(f"Dense({self.units}) declares input_dim={self.input_dim} but receives "
                              f"{in_features} features; remove input_dim or make it {in_features}")
        self.input_dim = in_features
        return self.units

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"W": (self.input_dim, self.units)}
        if self.use_bias:
            shapes["b"] = (self.units,)
        return shapes

    def bind(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.W, self.dW = params["W"], grads["W"]
        self.b, self.db = params.get("b"), grads.get("b")

    def init_params(self, rng: np.random.Generator) -> None:
        init = get_initializer(self.kernel_initializer)
        self.W[...] = init(rng, self.input_dim, self.units, self.W.shape)
        if self.b is not None:
            self.b[...] = 0

    def mark_grads_zero(self) -> None:
        self._grads_zero = True

    def shared_clone(self) -> "Dense":
        clone = copy.copy(self)
        clone._grads_zero = False
        return clone

    def forward(self, x: np.ndarray, training: bool = True, inplace: bool = False) -> np.ndarray:
        return self.forward_by_calls(x, None, training, inplace)

    def forward_by_calls(self, x: np.ndarray, calls: list[slice] | None, training: bool = True,
                         inplace: bool = False) -> np.ndarray:
        self._x = x
        y = matmul_by_rows(x, self.W, calls)
        if self.b is not None:
            y += self.b
        return y

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 inplace: bool = False) -> np.ndarray | None:
        if self._grads_zero:  # write straight into the cleared buffer: no temporary
            self._write_param_grads(dout)
        else:
            self.dW += matmul(self._x.T, dout)
            if self.db is not None:
                self.db += dout.sum(axis=0)
        self._grads_zero = False
        return self.input_grad(dout) if need_input_grad else None

    def input_grad(self, dout: np.ndarray, inplace: bool = False,
                   calls: list[slice] | None = None) -> np.ndarray:
        return matmul_by_rows(dout, self.W.T, calls)

    def _write_param_grads(self, dout: np.ndarray) -> None:
        """Write (not add) the last forward's parameter gradients into the gradient views."""
        matmul(self._x.T, dout, out=self.dW)
        if self.db is not None:
            np.add.reduce(dout, axis=0, out=self.db)

    def param_grad_pieces(self, dout: np.ndarray, rows: list[slice],
                          scratch: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """Pieces of whole rows of W (as many as fit ``scratch``), then b: the pieces stay in
        the cache while they are taken, where a whole dW would go out to memory and back."""
        height = max(1, len(scratch) // self.units)  # rows of W a piece
        for top in range(0, self.input_dim, height):
            piece = scratch[:min(height, self.input_dim - top) * self.units].reshape(-1, self.units)
            for k, part in enumerate(rows):
                matmul(self._x[part, top:top + len(piece)].T, dout[part], out=piece)
                yield top * self.units, k, piece.reshape(-1)
        if self.db is not None:
            for k, part in enumerate(rows):
                yield self.W.size, k, np.add.reduce(dout[part], axis=0, out=scratch[:self.units])

    def get_config(self) -> dict[str, Any]:
        return {"type": "Dense", "units": self.units, "input_dim": self.input_dim,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer}


class Activation(Layer):
    """An element-wise (or row-wise) function whose backward reads its own output."""

    caches_output = True

    def forward(self, x: np.ndarray, training: bool = True, inplace: bool = False) -> np.ndarray:
        self._y = self._apply(x, x if inplace else None)
        return self._y

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 inplace: bool = False) -> np.ndarray | None:
        return self._grad(dout, self._y, dout if inplace else None)

    def _apply(self, x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _grad(self, dout: np.ndarray, y: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


class ReLU(Activation):
    kind = "relu"

    def _apply(self, x, out):
        return np.maximum(x, 0, out=out)

    def _grad(self, dout, y, out):
        return np.multiply(dout, y > 0, out=out)


class LeakyReLU(Activation):
    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray, training: bool = True, inplace: bool = False) -> np.ndarray:
        self._negative = x < 0
        y = x if inplace else x.copy()
        np.multiply(y, self.negative_slope, out=y, where=self._negative)
        return y

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 inplace: bool = False) -> np.ndarray | None:
        dx = dout if inplace else dout.copy()
        np.multiply(dx, self.negative_slope, out=dx, where=self._negative)
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}


class Sigmoid(Activation):
    kind = "sigmoid"

    def _apply(self, x, out):
        y = np.multiply(x, 0.5, out=out)  # sigmoid(x) = 0.5 tanh(x/2) + 0.5: no overflow
        np.tanh(y, out=y)
        y *= 0.5
        y += 0.5
        return y

    def _grad(self, dout, y, out):
        dx = np.multiply(dout, y, out=out)
        dx *= 1 - y
        return dx


class Tanh(Activation):
    kind = "tanh"

    def _apply(self, x, out):
        return np.tanh(x, out=out)

    def _grad(self, dout, y, out):
        dx = np.multiply(dout, y * y - 1, out=out)
        return np.negative(dx, out=dx)


class Softmax(Activation):
    """Row-wise softmax; before a cross-entropy loss the model fuses it into the loss."""

    kind = "softmax"

    def _apply(self, x, out):
        y = np.subtract(x, x.max(axis=1, keepdims=True), out=out)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
        return y

    def _grad(self, dout, y, out):
        dot = np.einsum("ij,ij->i", dout, y)[:, None]
        dx = np.subtract(dout, dot, out=out)
        dx *= y
        return dx


class Dropout(Layer):
    """Inverted dropout: zero a fraction ``rate`` of inputs in training and scale the rest.

    The mask generator is seeded from the model's seed and the layer's position unless a
    ``seed`` is given, so runs are reproducible.
    """

    kind = "dropout"

    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"Dropout rate must lie in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def forward(self, x: np.ndarray, training: bool = True, inplace: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
        self._mask = keep.astype(x.dtype)
        self._mask *= 1.0 / (1.0 - self.rate)
        return np.multiply(x, self._mask, out=x if inplace else None)

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 inplace: bool = False) -> np.ndarray | None:
        if self._mask is None:
            return dout
        return np.multiply(dout, self._mask, out=dout if inplace else None)

    def reset_rng(self, seed: list[int]) -> None:
        if self.seed is None:
            self.rng = np.random.default_rng(seed)

    def get_config(self) -> dict[str, Any]:
        return {"type": "Dropout", "rate": self.rate, "seed": self.seed}


ACTIVATIONS: dict[str, type[Activation]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
}
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, Dropout)
}


def make_activation(name: str) -> Activation | None:
    """The activation layer for a Keras-style name ("linear" and None give no layer)."""
    if name in (None, "linear"):
        return None
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, [*ACTIVATIONS, "linear"])
    return ACTIVATIONS[name]()


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``get_config()`` output (used by model save/load)."""
    config = dict(config)
    type_name = config.pop("type")
    if type_name not in LAYER_TYPES:
        raise unknown_name("layer type", type_name, LAYER_TYPES)
    return LAYER_TYPES[type_name](**config)
