"""The optimizer base class: hyper-parameter bookkeeping, state and serialisation.

An optimizer updates a flat parameter array in place from a flat gradient array of the same
size. It keeps its state (momenta, running averages) in flat arrays sized on the first
``step``, so one instance serves one buffer or one slice of it: a sharded optimizer gives
each rank an instance for its slice, and stepping the slices equals stepping the whole.
Subclasses write ``_update`` only (the template method), using two preallocated scratch
arrays so a step makes no temporaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpinn.errors import ConfigError


class Optimizer:
    """Base class. ``defaults`` lists every hyper-parameter with torch.optim's default."""

    defaults: dict[str, Any] = {}
    state_names: tuple[str, ...] = ()

    def __init__(self, **hyper: Any) -> None:
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no setting {unknown[0]!r}; its settings "
                              f"are: {', '.join(self.defaults)}")
        for name, default in self.defaults.items():
            setattr(self, name, hyper.get(name, default))
        self._validate()
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    def _validate(self) -> None:
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"{type(self).__name__}: lr must be a positive number, got {self.lr!r}")
        if getattr(self, "weight_decay", 0) < 0:
            raise ConfigError(f"{type(self).__name__}: weight_decay must be >= 0, "
                              f"got {self.weight_decay!r}")

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.defaults}

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        """Update ``params`` in place from ``grads`` (same shape); ``grads`` is left unchanged."""
        if params.shape != grads.shape:
            raise ConfigError(f"params {params.shape} and grads {grads.shape} differ in shape")
        self._ensure_state(params)
        self.steps += 1
        self._update(params, grads, *self._scratch)

    def _ensure_state(self, params: np.ndarray) -> None:
        if self._scratch is not None and self._scratch[0].shape == params.shape:
            return
        if self.state:
            size = next(iter(self.state.values())).size
            raise ConfigError(f"{type(self).__name__} holds state for {size} parameters but was "
                              f"given {params.size}; use one optimizer per buffer or slice")
        self._scratch = (np.empty_like(params), np.empty_like(params))
        self.state = {name: np.zeros_like(params) for name in self.state_names}

    def _update(self, params: np.ndarray, grads: np.ndarray, scratch: np.ndarray,
                work: np.ndarray) -> None:
        """Update ``params`` in place; ``scratch`` and ``work`` are free arrays of its shape."""
        raise NotImplementedError

    def _decayed(self, params: np.ndarray, grads: np.ndarray, scratch: np.ndarray) -> np.ndarray:
        """grads + weight_decay * params (L2 penalty), in scratch when weight decay is on."""
        if not self.weight_decay:
            return grads
        np.multiply(params, self.weight_decay, out=scratch)
        scratch += grads
        return scratch

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, step count and state arrays (copies), for checkpoints."""
        return {"type": type(self).__name__, "hyper": self.hyperparameters(), "steps": self.steps,
                "state": {name: array.copy() for name, array in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (from this optimizer type)."""
        if state.get("type") != type(self).__name__:
            raise ConfigError(f"optimizer state is from {state.get('type')!r}, "
                              f"not {type(self).__name__!r}")
        missing = set(self.state_names) - set(state["state"]) if state["state"] else set()
        if missing:
            raise ConfigError(f"optimizer state lacks {', '.join(sorted(missing))}")
        for name, value in state["hyper"].items():
            setattr(self, name, tuple(value) if isinstance(self.defaults[name], tuple) else value)
        self.steps = int(state["steps"])
        self.state = {name: np.array(array) for name, array in state["state"].items()}
        first = next(iter(self.state.values()), None)
        self._scratch = None if first is None else (np.empty_like(first), np.empty_like(first))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({settings})"
