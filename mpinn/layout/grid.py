"""The shape of a data x pipeline x tensor process grid, and where each rank sits in it.

Ranks are laid out tensor-fastest: rank = (d * P + p) * T + t, so a tensor-parallel group
(which talks on every layer) is a run of neighbouring ranks, usually on one node.
"""

from __future__ import annotations

from typing import NamedTuple

from mpinn.errors import ConfigError, require_positive_int

AXES = ("data", "pipeline", "tensor")


class GridShape(NamedTuple):
    data: int = 1
    pipeline: int = 1
    tensor: int = 1

    @property
    def size(self) -> int:
        return self.data * self.pipeline * self.tensor

    def coordinates(self, rank: int) -> tuple[int, int, int]:
        """(data, pipeline, tensor) coordinates of ``rank``."""
        rest, t = divmod(rank, self.tensor)
        d, p = divmod(rest, self.pipeline)
        return d, p, t

    def check_world(self, world_size: int) -> None:
        """Raise unless the grid has exactly ``world_size`` ranks, suggesting grids that fit."""
        if self.size == world_size:
            return
        fits = [describe(GridShape(world_size // (p * t), p, t)) for p in _divisors(world_size)
                for t in _divisors(world_size // p)]
        raise ConfigError(f"the grid {describe(self)} has {self.data} x {self.pipeline} x "
                          f"{self.tensor} = {self.size} ranks but the job has {world_size}; "
                          f"choose one whose product is {world_size}, e.g. {'; '.join(fits[:6])}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def describe(shape: GridShape) -> str:
    """'data=2,pipeline=2,tensor=1': the flag syntax."""
    return ",".join(f"{axis}={size}" for axis, size in zip(AXES, shape))


def parse_grid(text: str) -> GridShape:
    """'data=2,pipeline=2' -> GridShape(2, 2, 1); axes left out have size 1."""
    sizes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        axis, _, value = item.partition("=")
        axis = axis.strip()
        if axis not in AXES:
            raise ConfigError(f"unknown grid axis {axis!r} in {text!r}; axes are {', '.join(AXES)} "
                              f"(e.g. data=2,pipeline=2)")
        if axis in sizes:
            raise ConfigError(f"grid axis {axis!r} given twice in {text!r}")
        try:
            sizes[axis] = int(value)
        except ValueError:
            raise ConfigError(f"grid axis {axis} needs an integer size, got {value.strip()!r} "
                              f"in {text!r}") from None
        require_positive_int(f"grid axis {axis}", sizes[axis])
    if not sizes:
        raise ConfigError(f"empty grid {text!r}; write e.g. data=2,pipeline=2")
    return GridShape(**sizes)
