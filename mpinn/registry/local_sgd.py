"""Local SGD: every rank steps its own replica; the replicas are averaged every few steps."""

from dataclasses import dataclass

from mpinn.errors import require_positive_int
from mpinn.registry import Options, option, register


@dataclass(frozen=True)
class LocalSGDOptions(Options):
    sync_every: int = option(8, "local-sgd: average the replicas every N steps (default 8)",
                             check=require_positive_int)


register("local-sgd", LocalSGDOptions, "mpinn.parallel.builders:local_sgd",
         "local SGD: replicas averaged every sync_every steps")
