"""ZeRO: data parallelism whose optimizer state (stage 2: also the reduced gradient) is sharded."""

from dataclasses import dataclass

from mpinn.registry import one_of, option, register
from mpinn.registry.data import DataOptions


@dataclass(frozen=True)
class ZeroOptions(DataOptions):
    zero_stage: int = option(2, "ZeRO stage: 1 shards optimizer state, 2 (default) also the "
                             "reduced gradients", check=one_of(1, 2))


register("zero", ZeroOptions, "mpinn.parallel.builders:zero",
         "data parallelism with the optimizer state sharded (ZeRO-1/2)", planned=True)
