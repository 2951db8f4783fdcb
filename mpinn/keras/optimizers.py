"""Keras' optimizers over mpinn's flat buffers: Keras' argument names, defaults and formulas.

They subclass mpinn's optimizers (state in flat arrays, updates in place, any slice: ZeRO
shards and pipeline stages step them like the whole buffer). What differs from torch.optim,
whose formulas mpinn's low-level optimizers follow:

- Adam adds ``epsilon`` to the root of the UNcorrected second moment ("epsilon hat"):
  ``p -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``, default 1e-7.
- ``weight_decay`` is decoupled in every optimizer, as in Keras: ``p -= p * weight_decay * lr``
  before the update. AdamW is Adam with ``weight_decay=0.004``.
- SGD keeps a velocity ``m = momentum * m - lr * g`` and adds it (Nesterov: adds
  ``momentum * m - lr * g``).
- RMSprop puts ``epsilon`` inside the root: ``lr * g / sqrt(v + epsilon)``, ``rho=0.9``.

``learning_rate`` is Keras' name of mpinn's ``lr`` (one value: schedules and callbacks set
either); ``lr=`` is accepted too, as older Keras did. Keras' clipping thresholds
(``clipnorm``, ``global_clipnorm``, ``clipvalue``) are mpinn's: held here, applied once per
step on the reduced gradient (:mod:`mpinn.optim.clipping`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mpinn import optim
from mpinn.errors import ConfigError, UnsupportedFeature, unknown_name
from mpinn.keras.unsupported import unsupported_names
from mpinn.optim.clipping import CLIP_DEFAULTS, check_clipping


class KerasOptimizer:
    """What the four Keras optimizers share: the Keras names and decoupled weight decay."""

    @property
    def learning_rate(self) -> float:
        return self.lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.lr = value

    @property
    def iterations(self) -> int:
        """Steps taken so far (Keras' name)."""
        return self.steps

    def _keras_init(self, learning_rate: float, settings: dict[str, Any],
                    options: dict[str, Any]) -> None:
        """mpinn's constructor with Keras' settings. ``lr`` (older Keras' name) overrides
        ``learning_rate``; ``name`` is accepted and unused. Keras' signature cannot tell a
        default passed on purpose from one left alone, so the settings that differ from the
        defaults count as the explicit ones (those a resumed checkpoint never replaces)."""
        options = dict(options)
        options.pop("name", None)
        given = {"lr": options.pop("lr", learning_rate), **settings, **options}
        optim.Optimizer.__init__(self, **given)
        defaults = {**self.defaults, **CLIP_DEFAULTS}
        self.explicit = frozenset(k for k, v in given.items() if v != defaults[k])

    def _check(self, **ranges: tuple[float, float]) -> None:
        """The checks of every Keras optimizer (learning rate, weight decay) and ``ranges``."""
        owner = type(self).__name__
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"{owner}: learning_rate must be a positive number, got {self.lr!r}")
        if self.weight_decay is not None and (isinstance(self.weight_decay, bool)
                                              or not self.weight_decay >= 0):
            raise ConfigError(f"{owner}: weight_decay must be None or >= 0, got {self.weight_decay!r}")
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value < high:
                raise ConfigError(f"{owner}: {name} must lie in [{low}, {high}), got {value!r}")
        check_clipping(owner, self.clipnorm, self.global_clipnorm, self.clipvalue)

    def _decay_weights(self, params: np.ndarray, work: np.ndarray) -> None:
        """Keras' decoupled weight decay: params -= params * weight_decay * lr."""
        if self.weight_decay:
            np.multiply(params, self.weight_decay * self.lr, out=work)
            params -= work


class SGD(KerasOptimizer, optim.SGD):
    """Keras' SGD: velocity m = momentum * m - lr * g; p += m (Nesterov: momentum * m - lr * g)."""

    defaults = {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": None}

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None, **options: Any) -> None:
        self._keras_init(learning_rate, {"momentum": momentum, "nesterov": nesterov,
                                         "weight_decay": weight_decay}, options)

    def _validate(self) -> None:
        self._check(momentum=(0.0, 1.0))
        self.state_names = ("momentum",) if self.momentum else ()

    def _update(self, params, grads, scratch, work) -> None:
        self._decay_weights(params, work)
        np.multiply(grads, self.lr, out=work)
        if not self.momentum:
            params -= work
            return
        velocity = self.state["momentum"]
        velocity *= self.momentum
        velocity -= work
        if self.nesterov:
            np.multiply(velocity, self.momentum, out=scratch)
            scratch -= work
            params += scratch
        else:
            params += velocity


class RMSprop(KerasOptimizer, optim.RMSprop):
    """Keras' RMSprop: v = rho v + (1 - rho) g^2; p -= lr g / sqrt(v + epsilon) (centred:
    v - mean(g)^2 + epsilon), through a momentum buffer when ``momentum`` > 0."""

    defaults = {"lr": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False,
                "weight_decay": None}

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, weight_decay: float | None = None,
                 **options: Any) -> None:
        self._keras_init(learning_rate, {"rho": rho, "momentum": momentum, "epsilon": epsilon,
                                         "centered": centered, "weight_decay": weight_decay}, options)

    def _validate(self) -> None:
        self._check(rho=(0.0, 1.0 + 1e-12), momentum=(0.0, 1.0), epsilon=(0.0, math.inf))
        self.state_names = (("velocity",) + (("average_gradient",) if self.centered else ())
                            + (("momentum",) if self.momentum else ()))

    def _update(self, params, grads, scratch, work) -> None:
        self._decay_weights(params, work)
        velocity = self.state["velocity"]
        velocity *= self.rho
        np.multiply(grads, grads, out=work)
        work *= 1 - self.rho
        velocity += work
        np.add(velocity, self.epsilon, out=work)
        if self.centered:
            average = self.state["average_gradient"]
            average *= self.rho
            average += np.multiply(grads, 1 - self.rho, out=scratch)
            work -= np.multiply(average, average, out=scratch)
        np.sqrt(work, out=work)
        np.divide(grads, work, out=work)
        work *= self.lr
        if self.momentum:
            buffer = self.state["momentum"]
            buffer *= self.momentum
            buffer += work
            params -= buffer
        else:
            params -= work


class Adam(KerasOptimizer, optim.Adam):
    """Keras' Adam: epsilon added to the uncorrected root ("epsilon hat"), decoupled weight decay."""

    defaults = {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
                "weight_decay": None}

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = None,
                 **options: Any) -> None:
        self._keras_init(learning_rate, {"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon,
                                         "amsgrad": amsgrad, "weight_decay": weight_decay}, options)

    def _validate(self) -> None:
        self._check(beta_1=(0.0, 1.0), beta_2=(0.0, 1.0), epsilon=(0.0, math.inf))
        self.state_names = ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _update(self, params, grads, scratch, work) -> None:
        self._decay_weights(params, work)
        beta_1, beta_2 = self.beta_1, self.beta_2
        m, v = self.state["momentum"], self.state["velocity"]
        np.subtract(grads, m, out=work)
        work *= 1 - beta_1
        m += work
        np.multiply(grads, grads, out=work)
        work -= v
        work *= 1 - beta_2
        v += work
        if self.amsgrad:
            v = np.maximum(self.state["velocity_hat"], v, out=self.state["velocity_hat"])
        alpha = self.lr * math.sqrt(1 - beta_2 ** self.steps) / (1 - beta_1 ** self.steps)
        np.sqrt(v, out=work)
        work += self.epsilon
        np.divide(m, work, out=work)
        work *= alpha
        params -= work


class AdamW(Adam, optim.AdamW):
    """Keras' AdamW: its Adam with decoupled ``weight_decay`` (default 0.004)."""

    defaults = {**Adam.defaults, "weight_decay": 0.004}

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, **options: Any) -> None:
        if weight_decay is None:
            raise ConfigError("AdamW: weight_decay must be a number >= 0 (Keras' default 0.004)")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, **options)


OPTIMIZERS: dict[str, type[optim.Optimizer]] = {
    "sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW,
}
SUPPORTED = "mpinn.keras.optimizers has SGD, RMSprop, Adam and AdamW"


def get(identifier: str | optim.Optimizer) -> optim.Optimizer:
    """An optimizer from a Keras name ('adam' means Keras' Adam here) or the object itself."""
    if isinstance(identifier, optim.Optimizer):
        return identifier
    key = str(identifier).lower()
    if key in OPTIMIZERS:
        return OPTIMIZERS[key]()
    if key in ("adagrad", "adadelta", "adamax", "nadam", "ftrl", "lion", "adafactor", "lamb"):
        raise UnsupportedFeature(f"optimizer {identifier!r}", SUPPORTED)
    raise unknown_name("optimizer", identifier, OPTIMIZERS)


__getattr__ = unsupported_names("tf.keras.optimizers", SUPPORTED)
