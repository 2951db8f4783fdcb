"""The strategies by name: each module of this package registers one or more of them.

A registration gives the strategy's name, its options (a frozen dataclass whose fields carry
their type, default, help and check) and its implementation as ``"module:builder"``, a
function ``builder(comm, options)`` imported only when the strategy is built. The config and
its TOML keys, the CLI's flags and help, ``mpinn plan``'s layout names and the benches are all
read from here, so a new strategy is one module in this folder (plus its implementation)::

    @dataclass(frozen=True)
    class GossipOptions(Options):
        peers: int = option(2, "ranks each rank averages with", check=require_positive_int)

    register("gossip", GossipOptions, "mpinn.parallel.gossip:build", "average with random peers")

Stdlib only (it imports neither numpy nor mpi4py), so the CLI reads it before it sets the
BLAS threads. Errors name options (``micro_batches``); only the CLI turns them into flags.
Renamed flags and keys keep their old spelling for one release, with a notice (``old=``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import pkgutil
import typing
from collections.abc import Callable, Mapping
from typing import Any

from mpinn.errors import ConfigError, unknown_name

Check = Callable[[str, Any], Any]


def option(default: Any, help: str, check: Check | None = None, choices: tuple = (),
           old: tuple[str, ...] = ()) -> Any:
    """A field of an options dataclass: its default, its help line, the check its value must
    pass (not run on None), the values it may take, and its old spellings (config keys)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check,
                                                         "choices": choices, "old": old})


class Options:
    """Base of the options dataclasses: every field's check runs on construction, then
    ``check()`` for rules across fields."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_value(field, getattr(self, field.name))
        self.check()

    def check(self) -> None:
        """Rules between fields (none by default)."""


def check_value(field: dataclasses.Field, value: Any) -> None:
    """The field's check and choices, on a value that is not None."""
    if value is None:
        return
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise unknown_name(field.name, value, choices)
    if field.metadata.get("check"):
        field.metadata["check"](field.name, value)


def positive_number(name: str, value: Any) -> None:
    """A finite number > 0 (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def one_of(*values: Any) -> Check:
    """A check that the value is one of ``values`` (for numbers; names use ``choices``)."""
    allowed = ", ".join(map(str, values[:-1])) + f" or {values[-1]}"

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or value not in values:
            raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    return check


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered strategy; ``planned``: ``mpinn plan`` models it (a layout name)."""

    name: str
    options: type
    builder: str
    help: str
    planned: bool = False

    def make_options(self, settings: Mapping[str, Any] | Any) -> Options:
        """This strategy's options from a mapping or an object (a config) holding them."""
        get = settings.get if isinstance(settings, Mapping) else lambda k, d: getattr(settings, k, d)
        return self.options(**{f.name: get(f.name, f.default) for f in dataclasses.fields(self.options)})

    def build(self, comm: Any, options: Options) -> Any:
        """The strategy over ``comm``: imports its implementation now."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(comm, options)


_ENTRIES: dict[str, Entry] = {}
_FIELDS: dict[str, dataclasses.Field] = {}
_DISCOVERED: list[bool] = []


def register(name: str, options: type, builder: str, help: str, planned: bool = False) -> None:
    """Add a strategy; its option fields join the config (a field shared with another
    strategy must be the same field, e.g. from a common base class)."""
    if name in _ENTRIES:
        raise ConfigError(f"strategy {name!r} is registered twice")
    if ":" not in builder:
        raise ConfigError(f"strategy {name!r}: builder must read 'module:function', got {builder!r}")
    hints = typing.get_type_hints(options)
    for field in dataclasses.fields(options):
        known = _FIELDS.get(field.name)
        if known is not None and (known.default, known.metadata) != (field.default, field.metadata):
            raise ConfigError(f"strategy {name!r} declares option {field.name!r} again with another "
                              f"default or help; share one field (a common options base class)")
        field.type = hints[field.name]
        _FIELDS.setdefault(field.name, field)
    _ENTRIES[name] = Entry(name, options, builder, help, planned)


def _discover() -> None:
    """Import every module of this package (each registers its strategies), once."""
    if not _DISCOVERED:
        _DISCOVERED.append(True)
        for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
            importlib.import_module(f"{__name__}.{module}")


def entries() -> tuple[Entry, ...]:
    _discover()
    return tuple(sorted(_ENTRIES.values(), key=lambda e: (e.name != "data", e.name)))


def names(planned: bool = False) -> tuple[str, ...]:
    """Every strategy's name, ``data`` (the default) first; ``planned``: those mpinn plan models."""
    return tuple(e.name for e in entries() if e.planned or not planned)


def get(name: str) -> Entry:
    _discover()
    if name not in _ENTRIES:
        raise unknown_name("strategy", name, names())
    return _ENTRIES[name]


def option_fields() -> list[dataclasses.Field]:
    """Every strategy's option fields, each once, in the order of :func:`entries`."""
    fields = {f.name: _FIELDS[f.name] for e in entries() for f in dataclasses.fields(e.options)}
    return list(fields.values())


def takes(option_name: str) -> tuple[str, ...]:
    """The strategies whose options include ``option_name``."""
    return tuple(e.name for e in entries()
                 if option_name in {f.name for f in dataclasses.fields(e.options)})


# ---- renamed spellings: the old one works for one release, with a notice ------------------
NOTICES: list[str] = []


def notice_renamed(old: str, new: str) -> None:
    NOTICES.append(f"{old} is now {new}; the old spelling works until the next release")


def renamed_keys(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every option's old key spelled as the option (and a notice)."""
    old_names = {old: f.name for f in option_fields() for old in f.metadata["old"]}
    renamed = {}
    for key, value in settings.items():
        if key in old_names:
            notice_renamed(f"config key {key!r}", repr(old_names[key]))
        renamed[old_names.get(key, key)] = value
    return renamed


class _OldSpelling(argparse.Action):
    """Stores into the new flag's destination and records a notice naming the new spelling."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        notice_renamed(option_string, self.new)


def add_old_spelling(parser: argparse.ArgumentParser, old: str, new: str, dest: str,
                     **options: Any) -> None:
    """Accept the flag ``old`` as a hidden alias of the flag ``new`` (same destination)."""
    parser.add_argument(old, dest=dest, action=_OldSpelling, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **options)
