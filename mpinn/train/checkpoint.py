"""Checkpoints: one ``.npz`` per save, written by rank 0, readable at any rank count.

A checkpoint holds what one rank training alone would hold: the whole model's flat
parameters and the optimizer state in the same flat layout (gathered by the strategy's
``full_state``), the loop position (epoch, batch in epoch, step, the epoch's tally so far,
the open metrics window), the model and run configuration, the mpinn version, the write
sequence number (the order files were written in, whatever their step) and a SHA-256 of every
array. The sampler needs no state: its order is a pure function of (seed, epoch). Files are
written to a temporary name, fsync'd and renamed, and never replace an existing file; loading
verifies every checksum. What a folder of them holds is :mod:`mpinn.train.checkpoint_folder`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpinn.errors import ConfigError
from mpinn.faults import inject
from mpinn.io import atomic_write

FORMAT = 1
NAME = re.compile(r"^ckpt-(\d{8,})(?:-(\d+))?\.npz$")  # ckpt-<step>.npz, -<n> if that was taken
TEMPORARY = re.compile(r"^\.ckpt-\d{8,}(?:-\d+)?\.npz\.tmp-\d+$")  # an interrupted write


@dataclass
class Progress:
    """Where training stands; the loop advances it and a checkpoint saves and restores it."""

    epoch: int = 0
    batch: int = 0  # batches done in this epoch
    step: int = 0  # optimizer steps done in all
    epoch_tally: np.ndarray = field(default_factory=lambda: np.zeros(3))  # reduced over ranks
    window_tally: np.ndarray = field(default_factory=lambda: np.zeros(3))  # the open log window
    window_first: int = 1  # the first step of the open log window (log_every steps per record)
    replicated: bool = False  # the tallies are sums over ranks on every rank (see metrics.counted)


@dataclass(frozen=True)
class Checkpoint:
    params: np.ndarray
    optimizer_state: dict[str, Any]
    progress: Progress
    meta: dict[str, Any]
    path: Path

    @property
    def sequence(self) -> int:
        """The write order: 1 for a folder's first checkpoint, one more for each later one."""
        return self.meta.get("sequence", 0)  # 0: written before sequence numbers existed


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).view(np.uint8)).hexdigest()


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """``ckpt-<step>.npz`` in ``directory``, or ``ckpt-<step>-<n>.npz`` if that name is taken
    (a checkpoint is never overwritten)."""
    path = Path(directory) / f"ckpt-{step:08d}.npz"
    n = 2
    while path.exists():
        path, n = Path(directory) / f"ckpt-{step:08d}-{n}.npz", n + 1
    return path


def write_checkpoint(directory: str | Path, params: np.ndarray, optimizer_state: dict[str, Any],
                     progress: Progress, model_config: dict[str, Any],
                     run_config: dict[str, Any] | None = None, sequence: int = 1) -> Path:
    """Write one checkpoint atomically under a new name (rank 0 only calls this); returns its
    path. ``sequence`` numbers the folder's writes in order."""
    from mpinn import __version__

    arrays = {"params": params, **{f"opt.{k}": v for k, v in optimizer_state["state"].items()}}
    meta = {
        "format": FORMAT, "mpinn_version": __version__, "model": model_config,
        "run": run_config or {}, "epoch": progress.epoch, "batch": progress.batch,
        "step": progress.step, "epoch_tally": [float(v) for v in progress.epoch_tally],
        "window_tally": [float(v) for v in progress.window_tally],
        "window_first": progress.window_first, "sequence": sequence,
        "optimizer": {k: v for k, v in optimizer_state.items() if k != "state"},
        "sha256": {name: _digest(array) for name, array in arrays.items()},
    }
    arrays["meta"] = np.array(json.dumps(meta))

    def write(file) -> None:
        np.savez(file, **arrays)
        inject("checkpoint", progress.step)  # test-only: the writer dies before the rename

    return atomic_write(checkpoint_path(directory, progress.step), write)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify one checkpoint; ValueError says what is wrong with a damaged file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if "meta" not in arrays:
        raise ValueError(f"{path}: not an mpinn checkpoint (no meta record)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        return _checked(path, meta, arrays)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged meta record ({type(exc).__name__}: {exc})") from None


def _checked(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Checkpoint:
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')}, this mpinn reads {FORMAT}")
    for name, digest in meta["sha256"].items():
        if name not in arrays or _digest(arrays[name]) != digest:
            raise ValueError(f"{path}: array {name!r} is missing or fails its checksum")
    state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}
    optimizer_state = {**meta["optimizer"], "state": state}
    progress = Progress(meta["epoch"], meta["batch"], meta["step"], np.array(meta["epoch_tally"]),
                        np.array(meta.get("window_tally", np.zeros(3))),
                        meta.get("window_first", meta["step"] + 1))
    return Checkpoint(arrays["params"], optimizer_state, progress, meta, path)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory`` by the step in their names, highest first (unread:
    :func:`~mpinn.train.checkpoint_folder.survey` verifies them and orders them as written)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), int(m.group(2) or 1), p)
             for p in directory.iterdir() if (m := NAME.match(p.name)) and p.is_file()]
    return [p for *_, p in sorted(found, reverse=True)]


def check_same_model(checkpoint: Checkpoint, model_config: dict[str, Any]) -> None:
    """ConfigError unless the checkpoint was written for a model of this architecture."""
    def shape(config: dict[str, Any]) -> list[Any]:
        return [config.get("input_dim"), config.get("dtype"), config.get("layers")]
    if shape(checkpoint.meta["model"]) != shape(model_config):
        raise ConfigError(f"checkpoint {checkpoint.path} was written for a different model "
                          f"({describe(checkpoint.meta['model'])}) than this run's "
                          f"({describe(model_config)}); use another option checkpoint_dir or the "
                          f"same model settings")


def describe(model_config: dict[str, Any]) -> str:
    """``64-32-10 float32``: the widths of a model configuration."""
    widths = [model_config.get("input_dim")] + [layer["units"] for layer in model_config["layers"]
                                                if layer["type"] == "Dense"]
    return "-".join(map(str, widths)) + f" {model_config.get('dtype')}"
