"""How a Keras name that mpinn lacks fails: with the feature named and what to use instead.

A port that reaches for ``tf.keras.layers.Conv2D`` should hear that mpinn has no convolutions
and what it has, not meet an ``AttributeError``. Each module of the front ends with
``__getattr__ = unsupported_names("tf.keras.layers", "...")``; private and dunder names still
raise ``AttributeError``, so introspection behaves as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from mpinn.errors import UnsupportedFeature


def unsupported_names(namespace: str, instead: str) -> Callable[[str], NoReturn]:
    """A module ``__getattr__`` that reports ``namespace.name`` as an unsupported feature."""

    def __getattr__(name: str) -> NoReturn:
        if name.startswith("_"):
            raise AttributeError(f"module {namespace!r} has no attribute {name!r}")
        raise UnsupportedFeature(f"{namespace}.{name}", instead)

    return __getattr__


def reject_options(owner: str, options: dict[str, object], instead: str,
                   defaults: dict[str, object] | None = None) -> None:
    """Keras arguments mpinn does not implement: harmless at their defaults (None, False, or
    the value in ``defaults``), an error naming the argument otherwise."""
    for name, value in options.items():
        if value is not None and value is not False and value != (defaults or {}).get(name, None):
            raise UnsupportedFeature(f"{owner}({name}=...)", instead)
