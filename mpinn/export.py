"""Export trained weights for other tools: safetensors (and .npz) named as PyTorch names them.

A ``Sequential`` exports as ``torch.nn.Sequential`` of the same layers would name its
``state_dict``: ``"{index}.weight"`` of shape (out, in) (the transpose of mpinn's (in, out)
W) and ``"{index}.bias"``, where index counts every layer, activations included. So
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` loads them unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mpinn.errors import ConfigError
from mpinn.io import atomic_write
from mpinn.outputs import check_output_file

def torch_named_weights(model) -> dict[str, np.ndarray]:
    """``{"0.weight": (out, in), "0.bias": (out,), ...}`` for every Dense of ``model``."""
    model.build()
    weights = {}
    for index, layer in enumerate(model.layers):
        if layer.param_shapes():
            weights[f"{index}.weight"] = np.ascontiguousarray(layer.W.T)
            if layer.b is not None:
                weights[f"{index}.bias"] = np.ascontiguousarray(layer.b)
    return weights


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ConfigError("safetensors export needs the safetensors package: "
                          "pip install 'mpinn[export]' (or write .npz instead)") from None
    return safetensors.numpy


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` with the safetensors library, atomically (temporary name, fsync, rename)."""
    encoded = _safetensors_numpy().save(
        {name: np.ascontiguousarray(array) for name, array in tensors.items()}, metadata=metadata)
    return atomic_write(path, lambda f: f.write(encoded))


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file."""
    return _safetensors_numpy().load_file(str(path))


EXPORT_SUFFIXES = (".safetensors", ".npz")


def check_export_path(path: str | os.PathLike) -> None:
    """ConfigError unless ``path`` names a writable ``.safetensors`` or ``.npz`` file."""
    if Path(path).suffix not in EXPORT_SUFFIXES:
        raise ConfigError(f"export file {path} must end in .safetensors or .npz")
    check_output_file(path, "--output")


def export_model(model, path: str | os.PathLike) -> Path:
    """Write the model's weights to ``path``: ``.safetensors`` or ``.npz`` by its suffix."""
    from mpinn import __version__

    weights = torch_named_weights(model)
    suffix = Path(path).suffix
    if suffix == ".safetensors":
        return write_safetensors(path, weights, {"format": "pt", "mpinn_version": __version__,
                                                 "layers": json.dumps(model.get_config()["layers"])})
    if suffix == ".npz":
        return atomic_write(path, lambda f: np.savez(f, **weights))
    raise ConfigError(f"export file {path} must end in .safetensors or .npz")
