"""Checkpoints: one ``.npz`` per save, written by rank 0, readable at any rank count.

A checkpoint holds what one rank training alone would hold: the whole model's flat
parameters and the optimizer state in the same flat layout (gathered by the strategy's
``full_state``), the loop position (epoch, batch in epoch, step, the epoch's tally so far),
the model and run configuration, the mpinn version, and a SHA-256 of every array. The
sampler needs no state: its order is a pure function of (seed, epoch). Files are written to
a temporary name, fsync'd and renamed, so a crash mid-write leaves the previous ones intact;
loading verifies every checksum and falls back to an older file when the newest is damaged.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mpinn.errors import ConfigError
from mpinn.io import atomic_save_npz

FORMAT = 1
NAME = re.compile(r"^ckpt-(\d{8,})\.npz$")


@dataclass
class Progress:
    """Where training stands; the loop advances it and a checkpoint saves and restores it."""

    epoch: int = 0
    batch: int = 0  # batches done in this epoch
    step: int = 0  # optimizer steps done in all
    epoch_tally: np.ndarray = field(default_factory=lambda: np.zeros(3))  # reduced over ranks


@dataclass(frozen=True)
class Checkpoint:
    params: np.ndarray
    optimizer_state: dict[str, Any]
    progress: Progress
    meta: dict[str, Any]
    path: Path


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).view(np.uint8)).hexdigest()


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.npz"


def write_checkpoint(directory: str | Path, params: np.ndarray, optimizer_state: dict[str, Any],
                     progress: Progress, model_config: dict[str, Any],
                     run_config: dict[str, Any] | None = None) -> Path:
    """Write one checkpoint atomically (rank 0 only calls this); returns its path."""
    from mpinn import __version__

    arrays = {"params": params, **{f"opt.{k}": v for k, v in optimizer_state["state"].items()}}
    meta = {
        "format": FORMAT, "mpinn_version": __version__, "model": model_config,
        "run": run_config or {}, "epoch": progress.epoch, "batch": progress.batch,
        "step": progress.step, "epoch_tally": [float(v) for v in progress.epoch_tally],
        "optimizer": {k: v for k, v in optimizer_state.items() if k != "state"},
        "sha256": {name: _digest(array) for name, array in arrays.items()},
    }
    arrays["meta"] = np.array(json.dumps(meta))
    return atomic_save_npz(checkpoint_path(directory, progress.step), arrays)


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
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')}, this mpinn reads {FORMAT}")
    for name, digest in meta["sha256"].items():
        if name not in arrays or _digest(arrays[name]) != digest:
            raise ValueError(f"{path}: array {name!r} is missing or fails its checksum")
    state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}
    optimizer_state = {**meta["optimizer"], "state": state}
    progress = Progress(meta["epoch"], meta["batch"], meta["step"], np.array(meta["epoch_tally"]))
    return Checkpoint(arrays["params"], optimizer_state, progress, meta, path)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_valid(directory: str | Path) -> Checkpoint | None:
    """The newest checkpoint that loads and passes its checksums, warning about newer damaged
    ones; None when there is none."""
    for path in list_checkpoints(directory):
        try:
            return read_checkpoint(path)
        except ValueError as exc:
            print(f"mpinn: warning: skipping damaged checkpoint: {exc}", file=sys.stderr, flush=True)
    return None


def prune(directory: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for path in list_checkpoints(directory)[keep:]:
        path.unlink(missing_ok=True)


def check_same_model(checkpoint: Checkpoint, model_config: dict[str, Any]) -> None:
    """ConfigError unless the checkpoint was written for a model of this architecture."""
    def shape(config: dict[str, Any]) -> list[Any]:
        return [config.get("input_dim"), config.get("dtype"), config.get("layers")]
    if shape(checkpoint.meta["model"]) != shape(model_config):
        raise ConfigError(f"checkpoint {checkpoint.path} was written for a different model "
                          f"({describe(checkpoint.meta['model'])}) than this run's "
                          f"({describe(model_config)}); use another --checkpoint-dir or the "
                          f"same model settings")


def describe(model_config: dict[str, Any]) -> str:
    """``64-32-10 float32``: the widths of a model configuration."""
    widths = [model_config.get("input_dim")] + [layer["units"] for layer in model_config["layers"]
                                                if layer["type"] == "Dense"]
    return "-".join(map(str, widths)) + f" {model_config.get('dtype')}"
