"""``tf.distribute`` over MPI: which ranks a model trains with, chosen by ``strategy.scope()``.

- ``MirroredStrategy()`` and ``MultiWorkerMirroredStrategy()``: synchronous data parallelism
  over every rank of the launch (``num_replicas_in_sync`` is the world size). mpinn's options
  go on the strategy: ``MirroredStrategy(deterministic=True)`` sums gradients exactly, so the
  parameters are bitwise the same at any rank count.
- ``OneDeviceStrategy()``: each rank trains alone, with no communication.

A model built, compiled or fitted inside ``with strategy.scope():`` uses that strategy (the
innermost scope at fit time wins, then the one the model was built or compiled in). Outside
any scope, the default stays: data parallelism over the launch. ``batch_size`` is the global
batch, as in TensorFlow.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mpinn.errors import UnsupportedFeature
from mpinn.keras.unsupported import unsupported_names
from mpinn.parallel import Communicator, DataParallel, install_abort_hook

SUPPORTED = ("mpinn.distribute has MirroredStrategy, MultiWorkerMirroredStrategy and "
             "OneDeviceStrategy; train with model.fit inside strategy.scope()")
_SCOPES: contextvars.ContextVar[tuple["Strategy", ...]] = contextvars.ContextVar("scopes", default=())


class Strategy:
    """Base class: the mpinn data-parallel strategy over ``communicator()``, made on first use."""

    def __init__(self, *, deterministic: bool = False, group_size: int = 128,
                 bucket_mb: float = 4.0, overlap: bool = True) -> None:
        self.options = {"deterministic": deterministic, "group_size": group_size,
                        "bucket_mb": bucket_mb, "overlap": overlap}
        self._parallel: DataParallel | None = None
        DataParallel(Communicator.local(), **self.options)  # bad options fail here, at once

    def communicator(self) -> Communicator:
        raise NotImplementedError

    @property
    def parallel(self) -> DataParallel:
        """The mpinn strategy ``fit`` runs under (one per distribute strategy)."""
        if self._parallel is None:
            comm = self.communicator()
            if comm.size > 1:
                install_abort_hook(comm)
            self._parallel = DataParallel(comm, **self.options)
        return self._parallel

    @property
    def num_replicas_in_sync(self) -> int:
        return self.parallel.comm.size

    @contextmanager
    def scope(self) -> Iterator["Strategy"]:
        """Models built, compiled or fitted inside use this strategy."""
        token = _SCOPES.set(_SCOPES.get() + (self,))
        try:
            yield self
        finally:
            _SCOPES.reset(token)

    def experimental_distribute_dataset(self, dataset: Any, options: Any = None):
        raise UnsupportedFeature("strategy.experimental_distribute_dataset (tf.data input)",
                                 "pass numpy arrays to model.fit inside strategy.scope(); each "
                                 "rank takes its part of every global batch")

    def run(self, fn: Any, args: Any = (), kwargs: Any = None):
        raise UnsupportedFeature("strategy.run (custom training loops)",
                                 "train with model.fit inside strategy.scope()")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({settings})"


class MirroredStrategy(Strategy):
    """Synchronous data parallelism over every MPI rank (one replica per rank)."""

    def __init__(self, devices: Any = None, cross_device_ops: Any = None, **options: Any) -> None:
        if devices is not None or cross_device_ops is not None:
            raise UnsupportedFeature(f"{type(self).__name__}(devices=..., cross_device_ops=...)",
                                     "mpinn runs one replica per MPI rank: launch with "
                                     "mpiexec -n N and reduce with MPI")
        super().__init__(**options)

    def communicator(self) -> Communicator:
        return Communicator.world()


class MultiWorkerMirroredStrategy(MirroredStrategy):
    """The same as MirroredStrategy: the MPI launch already spans the workers."""

    def __init__(self, cluster_resolver: Any = None, communication_options: Any = None,
                 **options: Any) -> None:
        if cluster_resolver is not None:
            raise UnsupportedFeature("MultiWorkerMirroredStrategy(cluster_resolver=...)",
                                     "the workers are the ranks of the MPI launch (mpiexec, srun)")
        super().__init__(**options)


class OneDeviceStrategy(Strategy):
    """Each rank trains alone on the data it is given: no communication at all."""

    def __init__(self, device: str = "/cpu:0", **options: Any) -> None:
        super().__init__(**options)

    def communicator(self) -> Communicator:
        return Communicator.local()


def current() -> Strategy | None:
    """The innermost strategy whose scope is open, or None."""
    scopes = _SCOPES.get()
    return scopes[-1] if scopes else None


def has_strategy() -> bool:
    return current() is not None


def get_strategy() -> Strategy:
    """The strategy in scope; outside any, mpinn's default (data parallel over the launch)."""
    return current() or MirroredStrategy()


__getattr__ = unsupported_names("tf.distribute", SUPPORTED)
