"""Weight initialisers: functions of (rng, fan_in, fan_out, shape) returning float64 arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mpinn.errors import unknown_name

Initializer = Callable[[np.random.Generator, int, int, tuple], np.ndarray]


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple) -> np.ndarray:
    """Glorot/Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); Keras' Dense default."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_uniform(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple) -> np.ndarray:
    """He/Kaiming uniform for ReLU nets: U(-a, a), a = sqrt(6 / fan_in)."""
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple) -> np.ndarray:
    """He/Kaiming normal for ReLU nets: N(0, 2 / fan_in)."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def zeros(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple) -> np.ndarray:
    """All zeros (biases)."""
    return np.zeros(shape)


INITIALIZERS: dict[str, Initializer] = {
    f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, zeros)
}


def get_initializer(name_or_fn: str | Initializer) -> Initializer:
    """Look an initialiser up by name, or return a callable unchanged."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in INITIALIZERS:
        raise unknown_name("initializer", name_or_fn, INITIALIZERS)
    return INITIALIZERS[name_or_fn]
