"""Keras' losses by name and class, as mpinn's losses (nothing computed twice).

``from_logits=False`` (Keras' default) means the model ends in a softmax (sigmoid for the
binary loss); mpinn then fuses that activation into the loss on logits, which is exact and
stable. A probability cross-entropy on a model that does not end in softmax is refused at
compile time, since mpinn would read its outputs as logits.
"""

from __future__ import annotations

from mpinn import nn
from mpinn.errors import ConfigError, UnsupportedFeature, unknown_name
from mpinn.keras.unsupported import unsupported_names

SUPPORTED = ("mpinn.keras.losses has BinaryCrossentropy, CategoricalCrossentropy, "
             "SparseCategoricalCrossentropy and MeanSquaredError (and their snake_case names)")


class ProbabilityCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy of a model that ends in softmax (``from_logits=False``)."""


def CategoricalCrossentropy(from_logits: bool = False) -> nn.Loss:
    """One-hot targets; ``from_logits=True`` for a model without a final softmax."""
    return nn.CrossEntropyLoss() if from_logits else ProbabilityCrossEntropy()


def SparseCategoricalCrossentropy(from_logits: bool = False) -> nn.Loss:
    """Integer labels; ``from_logits=True`` for a model without a final softmax."""
    return nn.CrossEntropyLoss() if from_logits else ProbabilityCrossEntropy()


def BinaryCrossentropy(from_logits: bool = False) -> nn.Loss:
    """0/1 targets on one output: probabilities (after a sigmoid) or, with from_logits, logits."""
    return nn.BCEWithLogitsLoss() if from_logits else nn.BCELoss()


def MeanSquaredError() -> nn.Loss:
    return nn.MSELoss()


LOSSES = {
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier: str | nn.Loss) -> nn.Loss:
    """A loss from a Keras name, or the loss object itself."""
    if isinstance(identifier, nn.Loss):
        return identifier
    if identifier in ("mae", "mean_absolute_error", "hinge", "huber", "kl_divergence",
                      "poisson", "log_cosh", "categorical_hinge", "squared_hinge"):
        raise UnsupportedFeature(f"loss {identifier!r}", SUPPORTED)
    if identifier not in LOSSES:
        raise unknown_name("loss", identifier, LOSSES)
    return LOSSES[identifier]()


def check_head(loss: nn.Loss, last_layer: nn.Layer | None) -> None:
    """Refuse a probability cross-entropy whose model does not end in softmax."""
    if isinstance(loss, ProbabilityCrossEntropy) and not isinstance(last_layer, nn.Softmax):
        raise ConfigError("a categorical cross-entropy on probabilities needs a model that ends "
                          "in activation='softmax'; add it to the last Dense, or use "
                          "SparseCategoricalCrossentropy(from_logits=True) (or "
                          "CategoricalCrossentropy(from_logits=True)) for logits")


__getattr__ = unsupported_names("tf.keras.losses", SUPPORTED)
