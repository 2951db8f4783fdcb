"""Arrays on disk, memory-mapped: ``.npy`` files and the members of an uncompressed ``.npz``.

A memory-mapped array costs a rank no memory up front: indexing a batch reads just those
rows from the page cache, which the ranks of a node share. So a rank's memory does not grow
with the data set or with the number of ranks, and each rank touches only the rows of its
part of each global batch. A compressed ``.npz`` member cannot be mapped; it is read whole.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from mpinn.errors import ConfigError

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # zip local file header: signature ... name, extra lengths


def open_npy(path: str | Path) -> np.ndarray:
    """A read-only memory map of one ``.npy`` file."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"cannot read {path}: not a valid .npy file ({exc})") from None


def npz_members(path: str | Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz``: memory maps where stored uncompressed, else in memory."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {Path(i.filename).stem: i for i in archive.infolist()}
            missing = [n for n in names if n not in infos]
            if missing:
                raise ConfigError(f"{path} lacks arrays {', '.join(missing)}; expected "
                                  f"{', '.join(names)} (it has {', '.join(infos) or 'none'})")
            return {n: _member(path, archive, infos[n]) for n in names}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot read {path}: expected an .npz archive of {', '.join(names)} "
                          f"({type(exc).__name__}: {exc})") from None


def _member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    if info.compress_type != zipfile.ZIP_STORED:
        with archive.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise ValueError(f"member {info.filename} has a damaged local header")
        data_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        f.seek(data_start)
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"member {info.filename} has .npy format version {version}")
        shape, fortran_order, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"member {info.filename} holds Python objects, which are not loaded")
    if offset + dtype.itemsize * int(np.prod(shape)) != data_start + info.compress_size:
        raise ValueError(f"member {info.filename}: its header and its size disagree")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran_order else "C")
