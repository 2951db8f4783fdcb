"""Which samples form each global batch, and which part of it a rank takes.

Pure functions of (seed, epoch, rank, size): every rank computes the same global order
without communicating, so N ranks see exactly the global batches one rank sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mpinn.errors import unknown_name


class ContiguousSampler:
    """Samples in stored order, every epoch."""

    name = "contiguous"

    def __init__(self, n_samples: int, seed: int = 0) -> None:
        self.n_samples = n_samples

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.arange(self.n_samples)


class RandomSampler(ContiguousSampler):
    """A fresh permutation each epoch, drawn from (seed, epoch): identical on every rank."""

    name = "random"

    def __init__(self, n_samples: int, seed: int = 0) -> None:
        super().__init__(n_samples)
        self.seed = seed

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)


SAMPLERS = {cls.name: cls for cls in (ContiguousSampler, RandomSampler)}


def make_sampler(name: str, n_samples: int, seed: int = 0) -> ContiguousSampler:
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, SAMPLERS)
    return SAMPLERS[name](n_samples, seed)


def global_batches(order: np.ndarray, batch_size: int, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Consecutive slices of ``order`` of ``batch_size``; the last may be partial unless dropped."""
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def num_batches(n_samples: int, batch_size: int, drop_last: bool = False) -> int:
    return n_samples // batch_size if drop_last else -(-n_samples // batch_size)


def shard_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """The contiguous part [lo, hi) of n items that ``rank`` of ``size`` takes.

    The first n % size ranks take one item more; a rank may get none when n < size.
    """
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def shard_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """Every rank's ``shard_range`` of n items over ``size`` ranks, in rank order (also the
    contiguous micro-batches of n rows)."""
    return [shard_range(n, rank, size) for rank in range(size)]
