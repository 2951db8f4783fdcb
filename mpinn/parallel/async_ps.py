"""Asynchronous training: parameter servers and workers, with bounded staleness (SSP).

Ranks 0..S-1 are servers: server k holds the slice k of the flat parameter buffer and a
twin of the model's optimizer for it (see :mod:`mpinn.parallel.param_server`). The
other W ranks are workers: worker w takes its contiguous part of every global batch,
computes its share of the global-mean gradient on the parameters it holds, pushes each
slice to its server and asks for fresh parameters, all with non-blocking point-to-point
messages; it never waits for the other workers, only for parameters recent enough:
at clock t it needs every slice at version >= t - staleness (the slowest worker at most
``staleness`` steps behind). With staleness 0 every worker computes on the parameters of
the previous step, which is synchronous data parallelism. One rank alone is its own server.

Between steps (where every rank meets: evaluation, checkpoints, the end) every server has
applied every step so far, so the servers' slices gathered together are the model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from mpinn.data.samplers import shard_range, shard_ranges
from mpinn.errors import ConfigError
from mpinn.parallel.comm import Communicator
from mpinn.parallel.partitions import Replicated
from mpinn.parallel.param_server import (DONE, TAG_GRAD, TAG_PARAMS, TAG_PULL, TAG_VERSION, ClockedShard,
                                         ServerRole)
from mpinn.parallel.sharding import shard_counts, slice_twin, state_slice
from mpinn.parallel.strategy import Strategy
from mpinn.registry.async_ps import AsyncOptions
from mpinn.nn.step import accumulate_gradients, evaluate_rows
from mpinn.optim.update import GradientClip, slice_runs


class WorkerRole:
    """A worker rank: computes gradients, pushes them, pulls parameters no staler than allowed."""

    def __init__(self, comm: Communicator, index: int, workers: int,
                 slices: list[tuple[int, int]], staleness: int, dtype: np.dtype) -> None:
        self.comm, self.index, self.workers, self.dtype = comm, index, workers, dtype
        self.slices, self.staleness = slices, staleness
        self.clock = 0
        self.held = [0] * len(slices)  # version of each slice in model.params
        self.pulls: list[tuple[list, np.ndarray, np.ndarray] | None] = [None] * len(slices)
        self.sends: list[tuple[Any, np.ndarray]] = []
        self.lags: Counter[int] = Counter()  # steps ahead of the slowest worker, per step

    def step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
             accumulation_steps: int) -> np.ndarray:
        self._refresh(model, self.clock - self.staleness)
        self.lags[self.clock - min(self.held)] += 1
        lo, hi = shard_range(len(batch), self.index, self.workers)
        rows = batch[lo:hi]
        model.net.zero_grad()
        tally = accumulate_gradients(model.net, model.head, x[rows], y[rows], len(batch),
                                     shard_ranges(len(rows), accumulation_steps), self._progress)
        self._push(model.grads)
        self.clock += 1
        self._request(self.clock - self.staleness)
        return tally

    def _refresh(self, model, needed: int) -> None:
        """Adopt every reply that has arrived; wait for the ones needed to reach ``needed``."""
        for server, (lo, hi) in enumerate(self.slices):
            while self.pulls[server] is not None or self.held[server] < needed:
                if self.pulls[server] is None:
                    self._request_from(server, needed)
                requests, version, params = self.pulls[server]
                if self.held[server] >= needed:
                    if not self.comm.Testall(requests):
                        break
                else:
                    self.comm.Waitall(requests)
                self.pulls[server] = None
                if version[0] > self.held[server]:
                    model.params[lo:hi] = params
                    self.held[server] = int(version[0])

    def _progress(self, offset: int = 0) -> None:
        """Backward hook: let MPI move the replies along (into their own buffers; the
        parameters backward is using change only at the next step)."""
        for pull in self.pulls:
            if pull is not None:
                self.comm.Testall(pull[0])

    def _push(self, grads: np.ndarray) -> None:
        self.sends = [(request, buf) for request, buf in self.sends if not self.comm.Test(request)]
        for server, (lo, hi) in enumerate(self.slices):
            buf = grads[lo:hi].copy()
            self.sends.append((self.comm.Isend(buf, server, TAG_GRAD), buf))

    def _request(self, needed: int) -> None:
        for server in range(len(self.slices)):
            if self.pulls[server] is None:
                self._request_from(server, needed)

    def _request_from(self, server: int, needed: int) -> None:
        lo, hi = self.slices[server]
        ask, version = np.array([max(needed, 0)], np.int64), np.zeros(1, np.int64)
        params = np.empty(hi - lo, self.dtype)
        requests = [self.comm.Isend(ask, server, TAG_PULL), self.comm.Irecv(version, server, TAG_VERSION),
                    self.comm.Irecv(params, server, TAG_PARAMS)]
        self.pulls[server] = (requests, version, params)

    def shut_down(self) -> None:
        """Take the last replies, tell every server this worker is done, complete every send."""
        for server in range(len(self.slices)):
            if self.pulls[server] is not None:
                self.comm.Waitall(self.pulls[server][0])
                self.pulls[server] = None
        done = [np.array([DONE], np.int64) for _ in self.slices]
        requests = [self.comm.Isend(buf, server, TAG_PULL) for server, buf in enumerate(done)]
        self.comm.Waitall(requests + [request for request, _ in self.sends])
        self.sends = []


class LocalRole:
    """One rank alone: its own worker and its own server (synchronous training)."""

    def __init__(self, shard: ClockedShard) -> None:
        self.shard = shard

    def step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
             accumulation_steps: int) -> np.ndarray:
        model.net.zero_grad()
        tally = accumulate_gradients(model.net, model.head, x[batch], y[batch], len(batch),
                                     shard_ranges(len(batch), accumulation_steps))
        self.shard.add(0, model.grads)
        return tally


class AsyncParameterServer(Strategy):
    """Parameter servers on the first ``servers`` ranks of ``comm``, workers on the others."""

    lockstep = False  # workers run up to ``staleness`` steps apart

    def __init__(self, comm: Communicator, staleness: int = 4, servers: int = 1) -> None:
        AsyncOptions(staleness=staleness, servers=servers)
        if comm.size > 1 and servers >= comm.size:
            raise ConfigError(f"asynchronous training needs at least one worker: {servers} server(s) "
                              f"on {comm.size} ranks; use at most {comm.size - 1} server(s)")
        self.comm, self.staleness = comm, staleness
        self.servers = servers if comm.size > 1 else 1

    def setup(self, model) -> None:
        """Rank 0's parameters everywhere; each server its slice and optimizer; roles assigned."""
        Replicated(self.comm).setup(model.net)
        counts = shard_counts(model.params.size, self.servers)
        self.counts = counts + [0] * (self.comm.size - self.servers)
        starts = [sum(counts[:k]) for k in range(self.servers)]
        self.slices = [(lo, lo + n) for lo, n in zip(starts, counts)]
        rank, workers = self.comm.rank, self.comm.size - self.servers
        servers = self.comm.split(int(rank >= self.servers), key=rank) if self.servers > 1 else None
        self.shard = None
        if rank < self.servers:
            lo, hi = self.slices[rank]
            clip = GradientClip(slice_runs(model.net, lo, hi), servers.Allreduce if servers else None)
            self.shard = ClockedShard(model.params[lo:hi], slice_twin(model.optimizer, lo, hi),
                                      max(workers, 1), clip)
        if self.comm.size == 1:
            self.role = LocalRole(self.shard)
        elif self.shard is not None:
            self.role = ServerRole(self.comm, self.shard, list(range(self.servers, self.comm.size)))
        else:
            self.role = WorkerRole(self.comm, rank - self.servers, workers, self.slices,
                                   self.staleness, model.params.dtype)
        self.steps = 0

    @property
    def lags(self) -> Counter:
        """On a worker: how many steps it ran how far ahead of the slowest worker."""
        return getattr(self.role, "lags", Counter())

    def train_step(self, model, x: np.ndarray, y: np.ndarray, batch: np.ndarray,
                   accumulation_steps: int = 1) -> np.ndarray:
        """A worker computes and pushes its part of step ``steps``; a server serves until it has
        applied that step (its tally is empty: workers count the samples)."""
        self.steps += 1
        if isinstance(self.role, ServerRole):
            self.role.serve_until(self.steps)
            return np.zeros(3)
        return self.role.step(model, x, y, batch, accumulation_steps)

    def share_params(self, model) -> np.ndarray:
        """Every rank takes the servers' current slices: the model after every step so far."""
        self.comm.Allgatherv(model.params, self.counts)
        if isinstance(self.role, WorkerRole):
            self.role.held = [self.steps] * self.servers
        return model.params

    def evaluate_tally(self, model, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
        self.share_params(model)
        lo, hi = shard_range(len(x), self.comm.rank, self.comm.size)
        return evaluate_rows(model.net, model.head, x, y, lo, hi, batch_size)

    def full_state(self, model) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The gathered parameters and the servers' optimizer slices in the one-rank layout."""
        params = self.share_params(model).copy()
        local = self.shard.optimizer.state_dict() if self.shard is not None else None
        names = self.comm.bcast_obj(list(local["state"]) if self.comm.is_root else None)
        empty = np.empty(0, model.params.dtype)
        whole = {name: self.comm.Gatherv(local["state"][name] if local else empty, self.counts)
                 for name in names}
        return (params, {**local, "state": whole}) if self.comm.is_root else None

    def load_full_state(self, model, params: np.ndarray, optimizer_state: dict[str, Any]) -> None:
        model.params[...] = params
        if self.shard is not None:
            lo, hi = self.slices[self.comm.rank]
            self.shard.optimizer.load_state_dict(state_slice(optimizer_state, lo, hi))

    def finish(self, model) -> None:
        """Close every message exchange (no request left open), then share the final model."""
        if not isinstance(self.role, LocalRole):
            self.role.shut_down()
        self.share_params(model)
