"""``tf.keras`` for mpinn: Keras code runs with only its imports changed.

``Sequential`` (also ``mpinn.keras.models.Sequential``) is the trainable model; ``layers``,
``optimizers`` (Keras' formulas), ``losses``, ``metrics`` and ``callbacks`` carry Keras'
names. A Keras feature mpinn lacks raises :class:`mpinn.errors.UnsupportedFeature` naming it
and what mpinn offers instead.
"""

from mpinn.keras import (callbacks, distribute, layers, losses, metrics, models, optimizers,
                         utils)
from mpinn.keras.layers import Input, InputLayer
from mpinn.keras.models import Model, Sequential, load_model
from mpinn.keras.unsupported import unsupported_names

__all__ = ["Input", "InputLayer", "Model", "Sequential", "callbacks", "distribute", "layers",
           "load_model", "losses", "metrics", "models", "optimizers", "utils"]

__getattr__ = unsupported_names("tf.keras", "mpinn.keras has Sequential, layers, optimizers, "
                                "losses, metrics, callbacks and models; data comes as numpy "
                                "arrays (mpinn.data has digits, MNIST files and synthetic sets)")
