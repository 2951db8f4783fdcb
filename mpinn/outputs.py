"""Output paths checked before any work: a run that cannot write its results never starts.

A model saved after twenty epochs into a folder that turns out to be a file is a lost model.
So every path a command will write is checked at the start: a missing parent folder is
created, and a file where a folder is needed, a folder where a file is needed or a folder
that cannot be written (permissions, a read-only mount) is a :class:`ConfigError` naming the
flag. Writability is probed by creating and removing a file, which is what the later write
does; ``os.access`` would say yes to root on a read-only mount's permission bits alone.
Stdlib only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mpinn.errors import ConfigError


def check_output_file(path: str | Path, flag: str) -> Path:
    """Make sure the file ``path`` (given as ``flag``) can be written; returns it as a Path."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name inside it, such as "
                          f"{target / 'out'}")
    _writable_folder(target.parent, flag, path)
    return target


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Make sure the folder ``path`` (given as ``flag``) exists or can be made, and is writable."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; give a folder name")
    _writable_folder(target, flag, path)
    return target


def _writable_folder(folder: Path, flag: str, given: str | Path) -> None:
    for ancestor in [folder, *folder.parents]:
        if ancestor.exists() and not ancestor.is_dir():
            raise ConfigError(f"cannot write {flag} {given}: {ancestor} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".mpinn-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write {flag} {given}: folder {folder} is not writable "
                          f"({exc.strerror or exc}); choose another location") from None
