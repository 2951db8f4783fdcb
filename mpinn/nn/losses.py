"""Losses: ``forward(pred, target)`` returns the mean over the batch, ``backward()`` its gradient.

Being means over samples, a data-parallel rank turns them into its share of the global mean
by scaling with (local samples / global samples); the losses themselves know nothing of that.
"""

from __future__ import annotations

import numpy as np

from mpinn.errors import ConfigError


class Loss:
    """Base class; subclasses set ``self._grad`` in forward."""

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self.forward(pred, target)

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        return self._grad


def _as_pred_shape(pred: np.ndarray, target: np.ndarray, loss: str) -> np.ndarray:
    """Targets of shape (n,) are accepted for predictions of shape (n, 1)."""
    target = np.asarray(target)
    if target.shape != pred.shape and target.shape == pred.shape[:1] and pred.shape[1:] == (1,):
        target = target.reshape(pred.shape)
    if target.shape != pred.shape:
        raise ConfigError(f"{loss}: targets of shape {target.shape} do not match predictions of "
                          f"shape {pred.shape}")
    return target.astype(pred.dtype, copy=False)


class MSELoss(Loss):
    """Mean squared error over all elements (torch's 'mean', Keras' 'mse')."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        diff = pred - _as_pred_shape(pred, target, "MSELoss")
        value = float(np.vdot(diff, diff)) / diff.size
        diff *= 2.0 / diff.size
        self._grad = diff
        return value


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on LOGITS: integer labels (n,) or one-hot/probability targets (n, C)."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        n, classes = pred.shape
        shifted = pred - pred.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        log_norm = np.log(sums)
        target = np.asarray(target)
        if target.ndim == 1:
            labels = _checked_labels(target, n, classes)
            picked = shifted[np.arange(n), labels]
            value = float(np.sum(log_norm[:, 0] - picked)) / n
            exp /= sums
            exp[np.arange(n), labels] -= 1.0
        else:
            target = _as_pred_shape(pred, target, "CrossEntropyLoss")
            value = float(np.sum(target * (log_norm - shifted))) / n
            exp /= sums
            exp *= target.sum(axis=1, keepdims=True)
            exp -= target
        exp /= n
        self._grad = exp
        return value


def _checked_labels(labels: np.ndarray, n: int, classes: int) -> np.ndarray:
    if labels.shape[0] != n:
        raise ConfigError(f"CrossEntropyLoss: {labels.shape[0]} labels for {n} predictions")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise ConfigError(f"labels must lie in [0, {classes}) for a {classes}-way output, found {bad}")
    return labels.astype(np.intp, copy=False)


class BCELoss(Loss):
    """Binary cross-entropy on probabilities; log clamped at -100 as torch does."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        target = _as_pred_shape(pred, target, "BCELoss")
        log_p = np.maximum(np.log(pred), -100.0)
        log_q = np.maximum(np.log1p(-pred), -100.0)
        value = -float(np.sum(target * log_p + (1 - target) * log_q)) / pred.size
        eps = np.finfo(pred.dtype).eps
        self._grad = (pred - target) / (np.maximum(pred * (1 - pred), eps) * pred.size)
        return value


class BCEWithLogitsLoss(Loss):
    """Sigmoid + binary cross-entropy on logits, computed stably."""

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        target = _as_pred_shape(pred, target, "BCEWithLogitsLoss")
        value = np.maximum(pred, 0) - pred * target + np.log1p(np.exp(-np.abs(pred)))
        prob = 0.5 * np.tanh(0.5 * pred) + 0.5
        self._grad = (prob - target) / pred.size
        return float(value.sum()) / pred.size

