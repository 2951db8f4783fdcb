"""Sequential: a stack of layers over ONE flat parameter buffer and ONE flat gradient buffer.

Every layer's weight and bias are views into ``params`` (and ``grads``), so an Allreduce, a
shard or a checkpoint handles the whole model as one array. This is the low-level model:
training (compile/fit/evaluate/predict) lives above it, on :class:`mpinn.keras.Sequential`,
which holds one of these as its ``net``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mpinn.errors import ConfigError
from mpinn.io import atomic_write
from mpinn.nn.layers import Dense, Layer, Sigmoid, Softmax, layer_from_config, make_activation
from mpinn.nn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class Head:
    """How training reads the model's output: run ``layers[:stop]`` and apply ``loss``.

    A final Softmax before cross-entropy (or Sigmoid before binary cross-entropy) is left out
    and fused into the loss on logits, which is exact and numerically stable.
    ``threshold`` is the single-output decision boundary for accuracy (0 on logits, 0.5 on
    probabilities).
    """

    stop: int
    loss: Loss
    threshold: float


class PieceTaker(Protocol):
    """Where ``Sequential.backward_by_rows`` hands the pieces of the gradient."""

    scratch: np.ndarray  # 1-D, the model's dtype: each piece is computed here

    def take(self, offset: int, k: int, values: np.ndarray) -> None: ...

    def layer_done(self, offset: int) -> None: ...


class _FrontOnly:
    """A method of the trainable model, named here only to say where it lives."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model: Any, owner: type | None = None) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ConfigError(f"nn.Sequential is the low-level model (forward, backward, params, "
                              f"grads); {self.name} lives on the trainable model: "
                              f"from mpinn.keras import Sequential, which holds one as its net")
        return refuse


class Sequential:
    def __init__(self, layers: Iterable[Layer] | None = None, seed: int = 0,
                 dtype: Any = np.float32) -> None:
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layers: list[Layer] = []
        self.input_dim: int | None = None
        self.output_dim: int | None = None
        self._params: np.ndarray | None = None
        for layer in layers or ():
            self.add(layer)

    # ---- structure -------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        """Append a layer (a Dense with ``activation=`` adds its activation layer after it)."""
        if self._params is not None:
            raise ConfigError("cannot add layers to a model that is already built")
        if not isinstance(layer, Layer):
            raise ConfigError(f"Sequential.add expects a Layer, got {type(layer).__name__}")
        self.layers.append(layer)
        activation = make_activation(layer.activation) if isinstance(layer, Dense) else None
        if activation is not None:
            self.layers.append(activation)

    @property
    def built(self) -> bool:
        return self._params is not None

    def build(self, input_dim: int | None = None) -> None:
        """Fix shapes, allocate the flat buffers and initialise parameters from the seed."""
        if self.built:
            if input_dim is not None and input_dim != self.input_dim:
                raise ConfigError(f"x has {input_dim} features but the model expects {self.input_dim}")
            return
        input_dim = input_dim or self._declared_input_dim()
        if not self.layers:
            raise ConfigError("the model has no layers; add at least one Dense layer")
        self.input_dim = width = int(input_dim)
        layout = []
        for layer in self.layers:
            width = layer.build(width)
            layout.append(layer.param_shapes())
        self.output_dim = width
        sizes = [int(np.prod(s)) for shapes in layout for s in shapes.values()]
        self._params = np.zeros(sum(sizes), dtype=self.dtype)
        self._grads = np.zeros_like(self._params)
        self._bind(layout)
        self.reset_parameters()

    def _declared_input_dim(self) -> int:
        first = self.layers[0] if self.layers else None
        if getattr(first, "input_dim", None) is None:
            raise ConfigError("the model's input width is unknown: give input_dim to the first "
                              "layer, call build(input_dim) or fit on data")
        return first.input_dim

    def _bind(self, layout: list[dict[str, tuple[int, ...]]]) -> None:
        self._names: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        self.layer_offsets: list[int] = []
        self.param_layers = [i for i, shapes in enumerate(layout) if shapes]
        counters: dict[str, int] = {}
        offset = 0
        for layer, shapes in zip(self.layers, layout):
            self.layer_offsets.append(offset)
            if not shapes:
                continue
            prefix = f"{layer.kind}_{counters.get(layer.kind, 0)}"
            counters[layer.kind] = counters.get(layer.kind, 0) + 1
            params, grads = {}, {}
            for name, shape in shapes.items():
                size = int(np.prod(shape))
                params[name] = self._params[offset:offset + size].reshape(shape)
                grads[name] = self._grads[offset:offset + size].reshape(shape)
                self._names[f"{prefix}.{name}"] = (offset, size, shape)
                offset += size
            layer.bind(params, grads)

    def reset_parameters(self) -> None:
        """Re-initialise every parameter from the model's seed (identical on every rank)."""
        rng = np.random.default_rng(self.seed)
        for index, layer in enumerate(self.layers):
            layer.init_params(rng)
            layer.reset_rng([self.seed, index])

    @property
    def params(self) -> np.ndarray:
        """All parameters, one contiguous 1-D array."""
        self._require_built()
        return self._params

    @property
    def grads(self) -> np.ndarray:
        """All gradients, same layout as ``params``; backward accumulates into it."""
        self._require_built()
        return self._grads

    def shared_copy(self) -> "Sequential":
        """Another model over the SAME ``params`` and ``grads`` whose layers keep their own forward
        caches, so several micro-batches can be in flight between forward and backward (pipeline
        schedules). Its backward always accumulates: clear the buffer with ``zero_grad`` here."""
        twin = copy.copy(self)
        twin.layers = [layer.shared_clone() for layer in self.layers]
        return twin

    def _require_built(self) -> None:
        if self._params is None:
            self.build()

    def named_params(self) -> dict[str, np.ndarray]:
        """``{'dense_0.W': view, 'dense_0.b': view, ...}``: views into ``params``."""
        return self._named(self.params)

    def named_grads(self) -> dict[str, np.ndarray]:
        return self._named(self.grads)

    def _named(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {name: flat[o:o + n].reshape(s) for name, (o, n, s) in self._names.items()}

    def zero_grad(self) -> None:
        """Clear the gradient buffer (backward accumulates)."""
        self.grads.fill(0)
        for layer in self.layers:
            layer.mark_grads_zero()

    # ---- math ------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = True, stop: int | None = None,
                calls: list[slice] | None = None) -> np.ndarray:
        """Output of ``layers[:stop]`` (all layers by default) for a batch ``x`` (n, features).

        ``calls``: row slices covering ``x``; every product over rows runs in one call per
        slice, so a row's bits do not depend on the rows outside its slice whatever the BLAS
        (deterministic mode; see ``Layer.forward_by_calls``)."""
        x = np.asarray(x)
        self.build(x.shape[1] if x.ndim == 2 else None)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ConfigError(f"x must have shape (batch, {self.input_dim}), got {x.shape}")
        self._stop = len(self.layers) if stop is None else stop
        h, owner = x.astype(self.dtype, copy=False), None
        for layer in self.layers[:self._stop]:
            inplace = owner is not None and not owner.caches_output
            out = (layer.forward(h, training=training, inplace=inplace) if calls is None
                   else layer.forward_by_calls(h, calls, training=training, inplace=inplace))
            if out is not h or inplace:
                owner = layer
            h = out
        return h

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 on_grads_ready: Callable[[int], None] | None = None) -> np.ndarray | None:
        """Back-propagate ``dout`` through the layers of the last forward, accumulating into
        ``grads``; return d loss / d x (None when ``need_input_grad`` is False).

        ``on_grads_ready(offset)`` is called as soon as ``grads[offset:]`` is final, in
        reverse layer order, so a strategy can start reducing it while backward goes on.
        """
        d = dout
        first_param = self.param_layers[0] if self.param_layers else len(self.layers)
        for i in range(self._stop - 1, -1, -1):
            if i < first_param and not need_input_grad:
                return None
            need = need_input_grad or i > first_param
            d = self.layers[i].backward(d, need_input_grad=need, inplace=d is not dout)
            if on_grads_ready is not None and i in self.param_layers:
                on_grads_ready(self.layer_offsets[i])
        return d

    def backward_by_rows(self, dout: np.ndarray, rows: list[slice], taker: "PieceTaker",
                         calls: list[slice] | None = None) -> None:
        """Back-propagate ``dout`` like ``backward(dout, need_input_grad=False)``, but with each
        parameter layer's gradient cut by rows and into pieces (``Layer.param_grad_pieces``):
        for each piece, for each ``rows[k]``, the gradient of those rows alone there goes to
        ``taker.take(offset, k, values)`` (``offset`` into ``grads``, ``values`` in
        ``taker.scratch``, overwritten by the next piece), then ``taker.layer_done(offset)``
        once a layer's pieces are all taken. ``grads`` is left alone. Input gradients run on
        all rows, one product call per slice of ``calls`` (as ``forward``). Deterministic mode
        sums the pieces exactly."""
        d = dout
        first_param = self.param_layers[0] if self.param_layers else len(self.layers)
        for i in range(self._stop - 1, first_param - 1, -1):
            layer = self.layers[i]
            if i in self.param_layers:
                start = self.layer_offsets[i]
                for offset, k, values in layer.param_grad_pieces(d, rows, taker.scratch):
                    taker.take(start + offset, k, values)
                taker.layer_done(start)
            if i > first_param:
                d = layer.input_grad(d, inplace=d is not dout, calls=calls)

    @property
    def num_params(self) -> int:
        return self.params.size

    # ---- training lives on the Keras front ----------------------------------------------
    compile, fit, evaluate, predict = (_FrontOnly() for _ in range(4))

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "dtype": self.dtype.name, "input_dim": self.input_dim,
                "layers": [layer.get_config() for layer in self.layers]}

    def save(self, path: str | os.PathLike, params: np.ndarray | None = None) -> None:
        """Write architecture and parameters to an .npz (atomically); ``params`` replaces the
        model's own (the whole model gathered from a strategy that holds only parts of it)."""
        arrays = {"params": self.params if params is None else params,
                  "config": np.array(json.dumps(self.get_config()))}
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Sequential":
        """Rebuild a model written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            config = json.loads(str(data["config"]))
            params = data["params"]
        model = cls([layer_from_config(c) for c in config["layers"]], seed=config["seed"],
                    dtype=DTYPES[config["dtype"]])
        model.build(config["input_dim"])
        if params.size != model.params.size:
            raise ConfigError(f"{path}: {params.size} parameters stored, the model has {model.params.size}")
        model.params[...] = params
        return model


def training_head(layers: list[Layer], loss: Loss) -> Head:
    """The fused output for training: see :class:`Head`."""
    last = layers[-1] if layers else None
    if isinstance(last, Softmax) and isinstance(loss, CrossEntropyLoss):
        return Head(len(layers) - 1, loss, 0.0)
    if isinstance(last, Sigmoid) and isinstance(loss, BCELoss):
        return Head(len(layers) - 1, BCEWithLogitsLoss(), 0.0)
    return Head(len(layers), loss, 0.0 if isinstance(loss, BCEWithLogitsLoss) else 0.5)
