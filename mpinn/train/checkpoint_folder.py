"""A checkpoint folder's housekeeping, done by rank 0: which files are valid, in what order
they were written, and what to set aside.

Nothing here deletes a checkpoint it has not just read back whole and verified. A damaged
file is moved into ``damaged-<UTC time>/``, the valid files a deliberate fresh start leaves
behind into ``previous-<UTC time>/``, and only :func:`prune` unlinks: a valid checkpoint
older, in write order, than the ``keep`` newest. Leftover temporary files of interrupted
writes are removed: they never were checkpoints.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from mpinn.io import fsync_folder
from mpinn.train.checkpoint import TEMPORARY, list_checkpoints, read_checkpoint


class Valid(NamedTuple):
    """A checkpoint that read back whole and passed its checksums."""

    path: Path
    sequence: int  # its place in the folder's write order
    step: int


@dataclass(frozen=True)
class Survey:
    """Every checkpoint file of a folder, read and checked."""

    valid: list[Valid]  # newest written first
    damaged: dict[Path, str]  # each damaged file and what is wrong with it

    @property
    def next_sequence(self) -> int:
        """The sequence number of the folder's next write."""
        return max((v.sequence for v in self.valid), default=0) + 1


def survey(directory: str | Path) -> Survey:
    """Read and verify every checkpoint in ``directory`` (subfolders and temporaries ignored)."""
    valid, damaged = [], {}
    for path in list_checkpoints(directory):
        try:
            checkpoint = read_checkpoint(path)
        except ValueError as exc:
            damaged[path] = str(exc)
        else:
            valid.append(Valid(path, checkpoint.sequence, checkpoint.progress.step))
    valid.sort(key=lambda v: (v.sequence, v.step), reverse=True)
    return Survey(valid, damaged)


def set_aside(directory: str | Path, paths: list[Path], kind: str) -> Path | None:
    """Move ``paths`` into a new ``<kind>-<UTC time>/`` subfolder; returns it (None if no paths)."""
    if not paths:
        return None
    directory = Path(directory)
    folder = _new_folder(directory, kind)
    for path in paths:
        path.rename(folder / path.name)  # the folder is new: nothing there to replace
    fsync_folder(folder)
    fsync_folder(directory)
    return folder


def set_aside_damaged(directory: str | Path, damaged: dict[Path, str]) -> None:
    """Move the damaged checkpoints into ``damaged-<UTC time>/``, saying so for each."""
    folder = set_aside(directory, list(damaged), "damaged")
    for reason in damaged.values():
        print(f"mpinn: warning: damaged checkpoint moved into {folder}: {reason}",
              file=sys.stderr, flush=True)


def _new_folder(directory: Path, kind: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = directory / f"{kind}-{stamp}", 2
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            folder, n = directory / f"{kind}-{stamp}-{n}", n + 1


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that interrupted checkpoint writes left; returns them."""
    directory = Path(directory)
    found = [p for p in directory.iterdir() if TEMPORARY.match(p.name)] if directory.is_dir() else []
    for path in found:
        path.unlink(missing_ok=True)
    return found


def prune(directory: str | Path, keep: int, written: Path) -> None:
    """Keep the ``keep`` newest valid checkpoints in write order, ``written`` (just written)
    always among them; move damaged ones aside and unlink the older valid ones."""
    found = survey(directory)
    set_aside_damaged(directory, found.damaged)
    if written not in [v.path for v in found.valid]:
        return  # it did not read back (moved aside, with a warning): prune nothing
    older = [v.path for v in found.valid if v.path != written]
    for path in older[keep - 1:]:
        path.unlink()
    fsync_folder(directory)
