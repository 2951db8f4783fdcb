"""Export trained weights for other tools: safetensors (and .npz) named as PyTorch names them.

A ``Sequential`` exports as ``torch.nn.Sequential`` of the same layers would name its
``state_dict``: ``"{index}.weight"`` of shape (out, in) (the transpose of mpinn's (in, out)
W) and ``"{index}.bias"``, where index counts every layer, activations included. So
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` loads them unchanged.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from mpinn.errors import ConfigError
from mpinn.io import atomic_save_npz, atomic_write

SAFETENSORS_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64"}


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


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` in the safetensors format (little-endian, C order), atomically."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset, blobs = 0, []
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if array.dtype not in SAFETENSORS_DTYPES:
            raise ConfigError(f"safetensors export: {name} has unsupported dtype {array.dtype}")
        blob = array.tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)

    def write(f) -> None:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for blob in blobs:
            f.write(blob)
    return atomic_write(path, write)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (metadata dropped)."""
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__", None)
    data = memoryview(raw)[8 + length:]
    names = {code: np.dtype(dtype) for dtype, code in SAFETENSORS_DTYPES.items()}
    return {name: np.frombuffer(data[slice(*info["data_offsets"])], names[info["dtype"]])
            .reshape(info["shape"]) for name, info in header.items()}


def export_model(model, path: str | os.PathLike) -> Path:
    """Write the model's weights to ``path``: ``.safetensors`` or ``.npz`` by its suffix."""
    from mpinn import __version__

    weights = torch_named_weights(model)
    suffix = Path(path).suffix
    if suffix == ".safetensors":
        return write_safetensors(path, weights, {"format": "pt", "mpinn_version": __version__,
                                                 "layers": json.dumps(model.get_config()["layers"])})
    if suffix == ".npz":
        return atomic_save_npz(path, weights)
    raise ConfigError(f"export file {path} must end in .safetensors or .npz")
