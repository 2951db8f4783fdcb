"""What a run will hold in memory, estimated before anything is allocated.

A model too large for the node is otherwise found by the kernel's OOM killer minutes later,
with no message. The estimate counts, per rank, what the build and the chosen strategy
allocate: the whole model's parameters and gradients (every rank builds the whole model
first, even when a strategy then keeps a slice), the optimizer's state arrays and its two
scratch arrays (over the part of the model this rank updates), and a model-parallel
strategy's own slice of parameters and gradients. Times the ranks on the node, it must fit in
the node's available memory.
"""

from __future__ import annotations

from pathlib import Path

from mpinn.errors import ConfigError

SHARDED_UPDATE = ("zero", "pipeline", "tensor", "grid")  # a rank updates ~1/N of the model
SLICED_MODEL = ("pipeline", "tensor", "grid")  # ... and keeps its own slice besides the build
OPTIMIZER_SCRATCH_ARRAYS = 2


def parameter_count(widths: list[int]) -> int:
    """Weights and biases of a stack of Dense layers of these widths (input first)."""
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def rank_bytes(n_params: int, itemsize: int, state_arrays: int, strategy: str, size: int) -> int:
    """Bytes one rank of ``size`` holds for a model of ``n_params`` under ``strategy``."""
    whole = 2 * n_params  # the build's parameters and gradients
    updated = -(-n_params // size) if strategy in SHARDED_UPDATE else n_params
    sliced = 2 * updated if strategy in SLICED_MODEL else 0
    return itemsize * (whole + sliced + (state_arrays + OPTIMIZER_SCRATCH_ARRAYS) * updated)


def available_bytes(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """The node's available memory (Linux's MemAvailable), or None where it is not known."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits(n_params: int, per_rank: int, ranks_on_node: int, available: int | None,
               strategy: str) -> None:
    """ConfigError naming both figures unless ``ranks_on_node`` ranks of ``per_rank`` bytes fit."""
    if available is None or per_rank * ranks_on_node <= available:
        return
    raise ConfigError(f"the model has {n_params:,} parameters: about {_gib(per_rank)} per rank "
                      f"under --strategy {strategy} (parameters, gradients, optimizer state), "
                      f"x {ranks_on_node} rank(s) on this node = {_gib(per_rank * ranks_on_node)}, "
                      f"but the node has {_gib(available)} available; use smaller --hidden "
                      f"layers, fewer ranks per node or a sharded strategy")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"
