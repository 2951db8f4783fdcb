"""safetensors export goes through the safetensors library; without it, a clear error."""

import sys

import numpy as np
import pytest

from mpinn.errors import ConfigError
from mpinn.export import read_safetensors, write_safetensors


def test_written_with_the_library_and_read_back(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "0.bias": np.ones(2)}
    path = write_safetensors(tmp_path / "w.safetensors", tensors, {"format": "pt"})
    back = safetensors_numpy.load_file(str(path))
    assert set(back) == set(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(back[name], array)
        assert back[name].dtype == array.dtype
    assert set(read_safetensors(path)) == set(tensors)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def test_without_the_library_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ConfigError, match=r"pip install 'mpinn\[export\]' \(or write .npz instead\)"):
        write_safetensors(tmp_path / "w.safetensors", {"a": np.zeros(2)})
