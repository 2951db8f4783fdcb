"""Small built-in data sets and the registry that finds one by name or path.

Everything is generated from a seed or shipped offline, so every rank builds the same arrays
without communicating and a run is reproducible from its configuration alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpinn.data.validate import class_count
from mpinn.errors import ConfigError, UnsupportedFeature, require_positive, require_positive_int, unknown_name


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test arrays; ``n_classes`` is None for regression (float targets)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None
    name: str

    @classmethod
    def from_tensor_slices(cls, *args, **kwargs):
        """``tf.data.Dataset.from_tensor_slices`` in a port: say what mpinn takes instead."""
        raise UnsupportedFeature("a tf.data pipeline (Dataset.from_tensor_slices)",
                                 "pass numpy arrays to fit: model.fit(x, y, batch_size=..., "
                                 "shuffle=True); batching and sharding over ranks are built in")


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The four XOR points: x float32 (4, 2), targets float32 (4, 1)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    return x, np.array([[0], [1], [1], [0]], dtype=np.float32)


def make_classification(n_samples: int = 1000, n_features: int = 10, n_classes: int = 2,
                        seed: int = 0, separation: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters, one per class: x float32 (n, features), y int64 (n,).

    Class centres have N(0, separation²) coordinates and points unit-variance noise around
    them, so centres differ by about ``separation`` noise deviations per feature; classes are
    balanced and shuffled.
    """
    require_positive_int("n_samples", n_samples)
    require_positive_int("n_features", n_features)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    require_positive("separation", separation)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(n_classes, n_features))
    y = rng.permutation(np.arange(n_samples) % n_classes)
    x = centres[y] + rng.normal(size=(n_samples, n_features))
    return x.astype(np.float32), y.astype(np.int64)


def make_regression(n_samples: int = 1000, n_features: int = 10, noise: float = 0.1,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Linear targets ``y = x @ w + b + noise·N(0, 1)``, with seeded x, w and b.

    Returns x float32 (n, features) and y float32 (n, 1).
    """
    require_positive_int("n_samples", n_samples)
    require_positive_int("n_features", n_features)
    if not noise >= 0:
        raise ConfigError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_samples, n_features))
    w, b = rng.normal(size=(n_features, 1)), rng.normal()
    y = x @ w + b + noise * rng.normal(size=(n_samples, 1))
    return x.astype(np.float32), y.astype(np.float32)


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, offline), pixels scaled to [0, 1].

    The train/test split is stratified by class and drawn from ``seed``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        message = "the digits data set needs scikit-learn: pip install 'mpinn[data]'"
        raise ConfigError(message) from None
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Dataset(x_train, y_train, x_test, y_test, 10, "digits")


def _split(x: np.ndarray, y: np.ndarray, n_classes: int | None, name: str) -> Dataset:
    """First 80% train, last 20% test: the generators already draw samples in random order."""
    cut = int(round(0.8 * len(x)))
    return Dataset(x[:cut], y[:cut], x[cut:], y[cut:], n_classes, name)


def _xor_dataset(seed: int = 0) -> Dataset:
    """Train = test = the four points; the seed is accepted for a uniform registry signature."""
    x, y = xor()
    return Dataset(x, y, x, y, None, "xor")


def _synthetic(seed: int = 0, **kwargs) -> Dataset:
    x, y = make_classification(seed=seed, **kwargs)
    return _split(x, y, kwargs.get("n_classes", 2), "synthetic")


def _regression(seed: int = 0, **kwargs) -> Dataset:
    x, y = make_regression(seed=seed, **kwargs)
    return _split(x, y, None, "regression")


def _with_classes(data: Dataset, num_classes: int | None) -> Dataset:
    if num_classes is None:
        return data
    if data.n_classes is None:
        raise ConfigError(f"num_classes applies to classification data; {data.name} has "
                          f"real-valued targets")
    return dataclasses.replace(data, n_classes=class_count([data.y_train, data.y_test],
                                                           num_classes, data.name))


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits, "xor": _xor_dataset, "synthetic": _synthetic, "regression": _regression,
}


def load_dataset(name_or_path: str | Path, num_classes: int | None = None, **kwargs) -> Dataset:
    """A registered data set by name (``DATASETS``), or MNIST-format files at a path.

    ``kwargs`` go to the named loader; for a path, a ``seed`` is ignored (the split is fixed).
    ``num_classes`` sets the outputs of a classification set (labels must lie below it).
    """
    loader = DATASETS.get(str(name_or_path))
    if loader is not None:
        return _with_classes(loader(**kwargs), num_classes)
    if Path(name_or_path).exists():
        from mpinn.data.mnist import load_mnist  # deferred: mnist.py imports Dataset from here

        kwargs.pop("seed", None)
        return load_mnist(name_or_path, num_classes, **kwargs)
    error = unknown_name("dataset", str(name_or_path), DATASETS)
    raise ConfigError(f"{error}; or give a path to an .npz file or a folder of MNIST IDX files")
