"""Renamed command-line flags: the old spelling keeps working for one release, with a notice.

Stdlib only, so every subcommand's parser (train, plan, sweep) can use it before numpy loads.
The CLI prints the collected notices once, from rank 0.
"""

from __future__ import annotations

import argparse
from typing import Any

NOTICES: list[str] = []


class _OldSpelling(argparse.Action):
    """Stores into the new flag's destination and records a notice naming the new spelling."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        NOTICES.append(f"{option_string} is now {self.new}; the old spelling works until the next "
                       f"release")


def add_old_spelling(parser: argparse.ArgumentParser, old: str, new: str, dest: str,
                     **options: Any) -> None:
    """Accept ``old`` as a hidden alias of the flag ``new`` (same destination)."""
    parser.add_argument(old, dest=dest, action=_OldSpelling, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **options)
