"""Data sets from disk: MNIST IDX files (gzipped or not), one ``.npz``, or a folder of ``.npy``.

IDX is the format MNIST, Fashion-MNIST and EMNIST ship in: two zero bytes, a type code, the
number of dimensions, big-endian uint32 sizes, then big-endian data. Damaged files are
reported with their name and what is wrong rather than as a reshape error deep in numpy.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from mpinn.data.arrays import npz_members, open_npy
from mpinn.data.datasets import Dataset
from mpinn.data.validate import check_label_values, class_count
from mpinn.errors import ConfigError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"IDX file {path}: corrupt or truncated gzip data ({exc})") from None


def load_idx(path: str | Path) -> np.ndarray:
    """One IDX file as an array of its shape, in native byte order."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise ConfigError(f"IDX file {path}: bad magic number {data[:4].hex() or '(empty)'}; "
                          f"expected 0000 then a type code in {sorted(IDX_TYPES)} and a rank")
    dtype, ndim = np.dtype(IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError(f"IDX file {path}: truncated header ({len(data)} of {header} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, 4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ConfigError(f"IDX file {path}: size mismatch, header shape {shape} needs "
                          f"{expected} data bytes but the file has {len(data) - header}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _images(x: np.ndarray, source: str, name: str) -> np.ndarray:
    """Flatten to (n, features); uint8 pixels scale to [0, 1] (in memory); float features stay
    as they are, memory maps included (the model casts each batch)."""
    if x.ndim < 2:
        raise ConfigError(f"{source}: {name} must hold one row of features per sample "
                          f"(2-D or more), got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"{source}: {name} must be real numbers, got dtype {x.dtype}"
                          + ("; the imaginary part would be dropped" if x.dtype.kind == "c" else ""))
    if 0 in x.shape:
        raise ConfigError(f"{source}: {name} is empty (shape {x.shape})")
    x = x.reshape(len(x), -1)
    if x.dtype.kind == "f":
        return x
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _labels(y: np.ndarray, source: str, name: str) -> np.ndarray:
    try:
        return check_label_values(y, name).astype(np.int64)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _idx_arrays(folder: Path) -> list[np.ndarray]:
    found = []
    for stem in MNIST_FILES:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise ConfigError(f"{folder} is missing {stem}[.gz]; an MNIST folder holds: "
                              f"{', '.join(MNIST_FILES)} (each optionally .gz)")
        found.append(load_idx(path))
    return found


def _npy_arrays(folder: Path) -> list[np.ndarray]:
    return [open_npy(folder / f"{key}.npy") for key in NPZ_KEYS]


def load_mnist(path: str | Path, num_classes: int | None = None) -> Dataset:
    """Data from a folder of the four MNIST IDX files, an ``.npz`` of ``x_train, y_train,
    x_test, y_test``, or a folder of those four ``.npy`` files: features (n, rows*cols),
    labels int64. Float features in ``.npy`` files or an uncompressed ``.npz`` are memory-mapped
    (see :mod:`mpinn.data.arrays`); uint8 images are scaled to float32 [0, 1] in memory."""
    path = Path(path)
    if path.is_dir():
        arrays = _npy_arrays(path) if (path / "x_train.npy").is_file() else _idx_arrays(path)
    elif path.is_file():
        values = npz_members(path, NPZ_KEYS)
        arrays = [values[key] for key in NPZ_KEYS]
    else:
        raise ConfigError(f"no such data file or folder: {path}")
    x_train, x_test = _images(arrays[0], str(path), "x_train"), _images(arrays[2], str(path), "x_test")
    y_train = _labels(arrays[1], str(path), "y_train")
    y_test = _labels(arrays[3], str(path), "y_test")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ConfigError(f"{path}: x_{split} has {len(x)} samples but y_{split} has "
                              f"{len(y)} labels; they must have the same length")
    n_classes = class_count([y_train, y_test], num_classes, str(path))
    return Dataset(x_train, y_train, x_test, y_test, n_classes, path.stem)
