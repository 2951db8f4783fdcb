"""Data sets, IDX/npz loading and input checks: shapes, dtypes, seeds and error messages."""

import gzip
import subprocess
import sys

import numpy as np
import pytest

from mpinn.data import (
    DATASETS,
    check_features,
    check_xy,
    digits,
    load_dataset,
    load_idx,
    load_mnist,
    make_classification,
    make_regression,
    xor,
)
from mpinn.errors import ConfigError

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, gz=False):
    """An independent IDX writer, straight from the format description."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim])
    header += np.array(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mnist_like(rng, n, rows=4, cols=3):
    return (rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8),
            rng.integers(0, 10, size=n, dtype=np.uint8))


# --- digits ---------------------------------------------------------------------------------

def test_digits_shapes_dtypes_scaling_and_classes():
    data = digits()
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == 450 and data.x_train.shape[1] == 64
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    for x in (data.x_train, data.x_test):
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert data.x_train.max() == 1.0
    assert data.n_classes == 10 and data.name == "digits"
    assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_test))


def test_digits_split_is_reproducible_per_seed():
    a, b, c = digits(seed=3), digits(seed=3), digits(seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ConfigError, match=r"pip install 'mpinn\[data\]'"):
        digits()


def test_digits_rejects_a_bad_test_fraction():
    with pytest.raises(ConfigError, match="test_fraction"):
        digits(test_fraction=1.0)


# --- IDX and MNIST-format files -------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_load_idx_round_trips_exactly(tmp_path, gz, dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(5, 4, 3)) * 100).astype(dtype)
    loaded = load_idx(write_idx(tmp_path / "a.idx", array, gz))
    assert loaded.dtype == dtype and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


def test_load_idx_detects_gzip_by_content_not_name(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "plain.gz", labels)), labels)
    np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "packed", labels, gz=True)), labels)


def test_truncated_idx_file_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte.*size mismatch"):
        load_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(100, np.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ConfigError, match=r"labels\.gz.*gzip"):
        load_idx(path)


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ConfigError, match=r"not-idx.*bad magic"):
        load_idx(path)


def test_load_mnist_from_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    x_train, y_train = mnist_like(rng, 20)
    x_test, y_test = mnist_like(rng, 6)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x_train, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y_train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x_test)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y_test, gz=True)
    data = load_mnist(tmp_path, num_classes=10)  # random labels: a class may be missing
    assert data.x_train.shape == (20, 12) and data.x_test.shape == (6, 12)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.x_train * 255.0, x_train.reshape(20, 12), atol=1e-4)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.n_classes == 10
    assert load_dataset(str(tmp_path), seed=5, num_classes=10).x_test.shape == (6, 12)


def test_load_mnist_folder_missing_a_file_lists_the_expected_ones(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ConfigError, match=r"missing train-labels-idx1-ubyte.*t10k-images"):
        load_mnist(tmp_path)


def test_load_mnist_from_npz(tmp_path):
    rng = np.random.default_rng(2)
    x_train, y_train = mnist_like(rng, 10)
    x_test = rng.random((4, 12)).astype(np.float64)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.array([0, 1, 1, 0]))
    data = load_dataset(path, num_classes=10)  # random labels: some classes are missing
    assert data.x_train.shape == (10, 12) and data.x_train.max() <= 1.0
    np.testing.assert_allclose(data.x_test, x_test.astype(np.float32))
    assert data.y_test.dtype == np.int64 and data.name == "tiny"


def test_load_mnist_npz_missing_keys_lists_them(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 3)), y_train=np.zeros(2))
    with pytest.raises(ConfigError, match=r"lacks arrays x_test, y_test; expected x_train"):
        load_mnist(path)


def test_load_mnist_rejects_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ConfigError, match=r"junk\.npz.*expected an \.npz"):
        load_mnist(path)


def _write_split(tmp_path, rng, n=40, features=6):
    arrays = {"x_train": rng.random((n, features), dtype=np.float32),
              "y_train": rng.integers(0, 3, size=n), "x_test": rng.random((8, features)),
              "y_test": rng.integers(0, 3, size=8)}
    return arrays


def test_uncompressed_npz_features_are_memory_mapped(tmp_path):
    arrays = _write_split(tmp_path, np.random.default_rng(5))
    np.savez(tmp_path / "plain.npz", **arrays)
    data = load_dataset(tmp_path / "plain.npz")
    assert isinstance(data.x_train, np.memmap) and isinstance(data.x_test, np.memmap)
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])
    np.testing.assert_array_equal(data.x_test, arrays["x_test"])
    np.testing.assert_array_equal(data.y_train, arrays["y_train"])
    assert data.n_classes == 3


def test_compressed_npz_is_read_whole_with_the_same_values(tmp_path):
    arrays = _write_split(tmp_path, np.random.default_rng(5))
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    data = load_dataset(tmp_path / "packed.npz")
    assert not isinstance(data.x_train, np.memmap)
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])


def test_folder_of_npy_files_is_memory_mapped(tmp_path):
    arrays = _write_split(tmp_path, np.random.default_rng(6))
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    data = load_dataset(tmp_path)
    assert isinstance(data.x_train, np.memmap)
    np.testing.assert_array_equal(data.x_test, arrays["x_test"])
    (tmp_path / "y_test.npy").unlink()
    with pytest.raises(ConfigError, match="y_test.npy"):
        load_dataset(tmp_path)


def test_truncated_npz_is_a_config_error_naming_the_file(tmp_path):
    np.savez(tmp_path / "full.npz", **_write_split(tmp_path, np.random.default_rng(7)))
    raw = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConfigError, match=r"cut\.npz"):
        load_dataset(tmp_path / "cut.npz")


def test_loading_and_fitting_a_memory_mapped_file_allocate_far_less_than_the_file(tmp_path):
    import tracemalloc

    from mpinn.keras import Sequential
    from mpinn.nn import Dense
    from mpinn.parallel import Communicator, DataParallel

    rng = np.random.default_rng(8)
    x = rng.random((8000, 500), dtype=np.float32)  # 16 MB on disk
    np.savez(tmp_path / "big.npz", x_train=x, y_train=rng.integers(0, 2, size=8000),
             x_test=x[:10], y_test=np.zeros(10, int))
    del x
    model = Sequential([Dense(2, input_dim=500, activation="softmax")], seed=0)
    model.compile("sgd", loss="sparse_categorical_crossentropy")
    tracemalloc.start()
    data = load_dataset(tmp_path / "big.npz")
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=200, verbose=0,
              strategy=DataParallel(Communicator.local()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < data.x_train.nbytes / 4, peak


# --- synthetic generators -------------------------------------------------------------------

@pytest.mark.parametrize("make", [make_classification, make_regression])
def test_generators_are_reproducible_per_seed(make):
    x1, y1 = make(seed=7)
    x2, y2 = make(seed=7)
    x3, _ = make(seed=8)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_make_classification_shapes_dtypes_and_balance():
    x, y = make_classification(n_samples=95, n_features=6, n_classes=3, seed=4)
    assert x.shape == (95, 6) and x.dtype == np.float32
    assert y.shape == (95,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [32, 32, 31]


def test_default_two_class_set_is_nearly_linearly_separable():
    x, y = make_classification()
    centroids = np.stack([x[y == k].mean(axis=0) for k in (0, 1)])
    nearest = np.argmin(((x[:, None, :] - centroids) ** 2).sum(axis=2), axis=1)
    assert np.mean(nearest == y) >= 0.95


def test_make_regression_is_linear_up_to_the_noise():
    x, y = make_regression(n_samples=500, n_features=4, noise=0.1, seed=1)
    assert x.shape == (500, 4) and y.shape == (500, 1)
    assert x.dtype == y.dtype == np.float32
    design = np.hstack([x, np.ones((500, 1), np.float32)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert np.std(y - design @ coef) == pytest.approx(0.1, rel=0.2)


def test_generators_reject_bad_arguments():
    with pytest.raises(ConfigError, match="n_classes must be an integer >= 2"):
        make_classification(n_classes=1)
    with pytest.raises(ConfigError, match="n_samples"):
        make_regression(n_samples=0)


def test_xor_points_and_targets():
    x, y = xor()
    assert x.shape == (4, 2) and y.shape == (4, 1)
    assert x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


# --- input checks ---------------------------------------------------------------------------

def test_check_xy_accepts_good_data():
    x = np.ones((5, 3), np.float32)
    check_xy(x, np.array([0, 1, 2, 1, 0]), n_classes=3)
    check_xy(x, np.array([0.0, 1.0, 2.0, 1.0, 0.0]), n_classes=3)
    check_xy(x, np.zeros((5, 1), np.float32))


def test_check_xy_reports_nan_and_inf_with_count_and_first_row():
    x = np.ones((10, 3))
    x[4, 1], x[7, 0], x[7, 2] = np.nan, np.inf, -np.inf
    with pytest.raises(ConfigError, match=r"x contains 1 NaN and 2 Inf values \(first in row 4\)"):
        check_xy(x, np.zeros(10, np.int64), n_classes=2)


def test_check_xy_reports_nan_targets_in_regression():
    y = np.zeros((4, 1))
    y[2] = np.nan
    with pytest.raises(ConfigError, match=r"y contains 1 NaN .*row 2"):
        check_xy(np.ones((4, 2)), y)


def test_check_xy_reports_the_first_label_out_of_range():
    y = np.zeros(50, np.int64)
    y[37], y[40] = 12, -1
    with pytest.raises(ConfigError, match=r"y must lie in \[0, 10\): found 12 at row 37"):
        check_xy(np.ones((50, 64)), y, n_classes=10)


def test_check_xy_rejects_non_integer_labels():
    with pytest.raises(ConfigError, match=r"whole numbers.*found 1.5 at row 2"):
        check_xy(np.ones((3, 2)), np.array([0.0, 1.0, 1.5]), n_classes=3)


def test_check_xy_rejects_one_hot_labels_with_a_hint():
    with pytest.raises(ConfigError, match=r"argmax"):
        check_xy(np.ones((3, 2)), np.eye(3), n_classes=3)


def test_check_xy_rejects_a_length_mismatch():
    with pytest.raises(ConfigError, match="x has 100 samples but y has 99"):
        check_xy(np.ones((100, 2)), np.zeros(99))


def test_check_xy_rejects_non_2d_or_non_numeric_x():
    with pytest.raises(ConfigError, match=r"images must be 2-D .*shape \(4, 2, 2\)"):
        check_xy(np.ones((4, 2, 2)), np.zeros(4), name="images")
    with pytest.raises(ConfigError, match="numeric"):
        check_xy(np.array([["a", "b"]]), np.zeros(1))


def test_check_features_names_both_counts():
    with pytest.raises(ConfigError, match="x has 63 features but the model expects 64"):
        check_features(np.ones((2, 63)), 64)
    check_features(np.ones((2, 64)), 64)


# --- registry and layering ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_name_loads(name):
    data = load_dataset(name, seed=0)
    assert data.name == name and data.x_train.dtype == np.float32
    assert len(data.x_train) == len(data.y_train) and len(data.x_test) == len(data.y_test)
    check_xy(data.x_train, data.y_train, n_classes=data.n_classes)


def test_registry_splits_and_target_kinds():
    synthetic, regression, xor_set = (load_dataset(n) for n in ("synthetic", "regression", "xor"))
    assert len(synthetic.x_train) == 800 and len(synthetic.x_test) == 200
    assert synthetic.n_classes == 2 and regression.n_classes is None
    assert regression.y_train.shape == (800, 1)
    assert xor_set.n_classes is None and np.array_equal(xor_set.x_train, xor_set.x_test)
    assert load_dataset("synthetic", n_classes=4, n_samples=100).n_classes == 4


def test_unknown_dataset_lists_the_names_and_the_path_option():
    with pytest.raises(ConfigError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert "unknown dataset 'cifar10'" in message
    assert all(name in message for name in DATASETS)
    assert ".npz" in message and "IDX" in message


def test_importing_mpinn_data_does_not_import_mpi4py():
    code = "import sys, mpinn.data; sys.exit('mpi4py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
