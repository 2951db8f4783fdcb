"""Data parallelism: every rank holds the whole model and a share of each global batch."""

from dataclasses import dataclass

from mpinn.errors import require_positive_int
from mpinn.registry import Options, option, positive_number, register


@dataclass(frozen=True)
class BucketOptions(Options):
    bucket_mb: float = option(4.0, "gradient bucket size in MB: each bucket's Allreduce starts "
                              "while backward runs (default 4.0)", check=positive_number)


@dataclass(frozen=True)
class DataOptions(BucketOptions):
    deterministic: bool = option(False, "bitwise the same result at any data-parallel degree "
                                 "(exact sums over fixed sample groups)")
    group_size: int = option(128, "samples per group in deterministic mode (fixed whatever the "
                             "rank count; default 128)", check=require_positive_int)


register("data", DataOptions, "mpinn.parallel.builders:data_parallel",
         "synchronous data parallelism: bucketed Allreduce overlapping backward", planned=True)
