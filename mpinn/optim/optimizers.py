"""SGD, RMSprop, Adam and AdamW with torch.optim's update rules and default settings.

Each update is a handful of in-place numpy operations over the flat buffer, using one
preallocated scratch array (see :class:`~mpinn.optim.base.Optimizer`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mpinn.errors import ConfigError, unknown_name
from mpinn.optim.base import Optimizer


def _require_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value < high:
        raise ConfigError(f"{owner}: {name} must lie in [{low}, {high}), got {value!r}")


class SGD(Optimizer):
    """p -= lr * g, with optional momentum (dampening, Nesterov) and L2 weight decay."""

    defaults = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
                "weight_decay": 0.0}

    def _validate(self) -> None:
        super()._validate()
        _require_range("SGD", "momentum", self.momentum, 0.0, 1.0)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("SGD: nesterov needs momentum > 0 and dampening = 0")
        self.state_names = ("momentum_buffer",) if self.momentum else ()

    def _update(self, params, grads, scratch, work) -> None:
        g = self._decayed(params, grads, scratch)
        if self.momentum:
            buf = self.state["momentum_buffer"]
            if self.steps == 1:
                np.copyto(buf, g)
            else:
                buf *= self.momentum
                buf += g if self.dampening == 0 else np.multiply(g, 1 - self.dampening, out=work)
            if self.nesterov:
                np.multiply(buf, self.momentum, out=work)
                work += g
                g = work
            else:
                g = buf
        np.multiply(g, self.lr, out=work)
        params -= work


class RMSprop(Optimizer):
    """Divide the gradient by a running root-mean-square (optionally centred, with momentum)."""

    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                "centered": False}

    def _validate(self) -> None:
        super()._validate()
        _require_range("RMSprop", "alpha", self.alpha, 0.0, 1.0 + 1e-12)
        _require_range("RMSprop", "momentum", self.momentum, 0.0, 1.0)
        self.state_names = (("square_avg",) + (("grad_avg",) if self.centered else ())
                            + (("momentum_buffer",) if self.momentum else ()))

    def _update(self, params, grads, scratch, work) -> None:
        g = self._decayed(params, grads, scratch)
        square_avg = self.state["square_avg"]
        np.multiply(g, g, out=work)
        work *= 1 - self.alpha
        square_avg *= self.alpha
        square_avg += work
        if self.centered:
            grad_avg = self.state["grad_avg"]
            grad_avg *= self.alpha
            grad_avg += np.multiply(g, 1 - self.alpha, out=work)
            np.multiply(grad_avg, grad_avg, out=work)
            np.subtract(square_avg, work, out=work)
        else:
            np.copyto(work, square_avg)
        np.sqrt(work, out=work)
        work += self.eps
        np.divide(g, work, out=work)
        if self.momentum:
            buf = self.state["momentum_buffer"]
            buf *= self.momentum
            buf += work
            np.multiply(buf, self.lr, out=work)
        else:
            work *= self.lr
        params -= work


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is an L2 penalty added to the gradient."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                "amsgrad": False}

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        try:
            self.betas = tuple(float(b) for b in self.betas)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: betas must be two numbers, got {self.betas!r}") from None
        if len(self.betas) != 2:
            raise ConfigError(f"{name}: betas must be two numbers, got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            _require_range(name, f"betas[{i}]", beta, 0.0, 1.0)
        self.state_names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def _gradient(self, params, grads, scratch) -> np.ndarray:
        """The gradient the moments follow: L2 weight decay folded in."""
        return self._decayed(params, grads, scratch)

    def _update(self, params, grads, scratch, work) -> None:
        beta1, beta2 = self.betas
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        g = self._gradient(params, grads, scratch)
        m *= beta1
        m += np.multiply(g, 1 - beta1, out=work)
        np.multiply(g, g, out=work)
        work *= 1 - beta2
        v *= beta2
        v += work
        if self.amsgrad:
            v = np.maximum(self.state["max_exp_avg_sq"], v, out=self.state["max_exp_avg_sq"])
        bias1, bias2 = 1 - beta1 ** self.steps, 1 - beta2 ** self.steps
        # lr/bias1 * m / (sqrt(v)/sqrt(bias2) + eps), with one pass fewer
        np.sqrt(v, out=work)
        work += self.eps * math.sqrt(bias2)
        np.divide(m, work, out=work)
        work *= self.lr * math.sqrt(bias2) / bias1
        params -= work


class AdamW(Adam):
    """Adam with decoupled weight decay: params shrink by lr * weight_decay before the step."""

    defaults = {**Adam.defaults, "weight_decay": 1e-2}

    def _gradient(self, params, grads, scratch) -> np.ndarray:
        if self.weight_decay:
            params *= 1 - self.lr * self.weight_decay
        return grads


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW,
}


def get_optimizer(name_or_obj: str | Optimizer, **settings: Any) -> Optimizer:
    """An optimizer from a name ("adam", "sgd", "rmsprop", "adamw") and settings, or the object
    itself (settings must then be empty)."""
    if isinstance(name_or_obj, Optimizer):
        if settings:
            raise ConfigError("settings are given for an optimizer object; set them on the object")
        return name_or_obj
    key = str(name_or_obj).lower()
    if key not in OPTIMIZERS:
        raise unknown_name("optimizer", name_or_obj, OPTIMIZERS)
    return OPTIMIZERS[key](**settings)
