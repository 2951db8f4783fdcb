"""Asynchronous parameter servers: workers push gradients and pull parameters, boundedly stale."""

import numbers
from dataclasses import dataclass

from mpinn.errors import ConfigError, require_positive_int
from mpinn.registry import Options, option, register


def steps_ahead(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"{name} must be >= 0 steps, a whole number (0: synchronous), got {value!r}")


@dataclass(frozen=True)
class AsyncOptions(Options):
    staleness: int = option(4, "async: a worker may run this many steps ahead of the slowest "
                            "(0: synchronous; default 4)", check=steps_ahead)
    servers: int = option(1, "async: parameter-server ranks, the parameters sharded over them "
                          "(default 1)", check=require_positive_int)


register("async", AsyncOptions, "mpinn.parallel.builders:parameter_server",
         "asynchronous parameter servers with bounded staleness")
