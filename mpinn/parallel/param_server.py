"""The server side of asynchronous training: a slice of the parameters, its optimizer, and the
messages that feed them.

Clocks: a worker's k-th gradient is its gradient for clock k (global batch k). A server
applies clock t, one optimizer step on the sample-weighted sum of every worker's clock-t
gradient, once all of them have arrived, in clock order; its ``version`` is the number of
clocks applied, which is also the number of steps the slowest worker has completed. A
worker asks for parameters of at least some version (a pull) and gets the server's current
slice once the server has reached it.
"""

from __future__ import annotations

import numpy as np

from mpinn.parallel.comm import Communicator
from mpinn.optim.update import GradientClip, update

TAG_GRAD, TAG_PULL, TAG_VERSION, TAG_PARAMS = 21, 22, 23, 24
DONE = -1  # a pull asking for this version says: no more messages from this worker


class ClockedShard:
    """Per-clock sums of the workers' gradients for ``params`` (a slice of the model), clipped
    server side by ``clip`` (its norm summed over the servers) and applied with ``optimizer``
    (a twin of the model's) in clock order. No other communication: the transport feeds it."""

    def __init__(self, params: np.ndarray, optimizer, workers: int, clip: GradientClip) -> None:
        self.params = params
        self.optimizer = optimizer
        self.clip = clip
        self.workers = workers
        self.version = 0
        self.next_clock = [0] * workers
        self._sums: dict[int, np.ndarray] = {}
        self._arrived: dict[int, int] = {}

    def add(self, worker: int, grad: np.ndarray) -> None:
        """Worker ``worker``'s next gradient (its clocks arrive in order); apply what is complete."""
        clock = self.next_clock[worker]
        self.next_clock[worker] += 1
        if clock in self._sums:
            self._sums[clock] += grad
        else:
            self._sums[clock] = grad.copy()
        self._arrived[clock] = self._arrived.get(clock, 0) + 1
        while self._arrived.get(self.version) == self.workers:
            update(self.optimizer, self.params, self._sums.pop(self.version), self.clip)
            del self._arrived[self.version]
            self.version += 1


class ServerRole:
    """A server rank: receives gradients and pulls from every worker, answers pulls."""

    def __init__(self, comm: Communicator, shard: ClockedShard, worker_ranks: list[int]) -> None:
        self.comm, self.shard, self.worker_ranks = comm, shard, worker_ranks
        self.grad_buffers = [np.empty_like(shard.params) for _ in worker_ranks]
        self.pull_buffers = [np.zeros(1, np.int64) for _ in worker_ranks]
        self.requests = [self._post_grad(w) for w in range(len(worker_ranks))]
        self.requests += [self._post_pull(w) for w in range(len(worker_ranks))]
        self.pending: dict[int, int] = {}
        self.sends: list[tuple[list, list[np.ndarray]]] = []
        self.done = [False] * len(worker_ranks)

    def _post_grad(self, worker: int):
        return self.comm.Irecv(self.grad_buffers[worker], self.worker_ranks[worker], TAG_GRAD)

    def _post_pull(self, worker: int):
        return self.comm.Irecv(self.pull_buffers[worker], self.worker_ranks[worker], TAG_PULL)

    def serve_until(self, version: int) -> None:
        """Handle messages until clock ``version - 1`` is applied."""
        while self.shard.version < version:
            self._handle(self.comm.Waitany(self.requests))

    def shut_down(self) -> None:
        """Serve every worker's last pulls until each says it is done, then close the posted
        gradient receives (no worker sends more) and complete every reply."""
        while not all(self.done):
            self._handle(self.comm.Waitany(self.requests))
        for request in self.requests[:len(self.worker_ranks)]:
            self.comm.Cancel(request)
        replies = [request for requests, _ in self.sends for request in requests]
        self.comm.Waitall(self.requests[:len(self.worker_ranks)] + replies)
        self.sends = []

    def _handle(self, index: int) -> None:
        workers = len(self.worker_ranks)
        worker = index % workers
        if index < workers:
            self.shard.add(worker, self.grad_buffers[worker])
            self.requests[index] = self._post_grad(worker)
        elif self.pull_buffers[worker][0] == DONE:
            self.done[worker] = True
            self.requests[index] = self.comm.NULL_REQUEST
        else:
            self.pending[worker] = int(self.pull_buffers[worker][0])
            self.requests[index] = self._post_pull(worker)
        self._answer_pulls()

    def _answer_pulls(self) -> None:
        """Send the current slice to every worker whose pull the current version satisfies."""
        self.sends = [(reqs, bufs) for reqs, bufs in self.sends if not self.comm.Testall(reqs)]
        for worker, wanted in list(self.pending.items()):
            if self.shard.version >= wanted:
                del self.pending[worker]
                rank = self.worker_ranks[worker]
                bufs = [np.array([self.shard.version], np.int64), self.shard.params.copy()]
                reqs = [self.comm.Isend(bufs[0], rank, TAG_VERSION),
                        self.comm.Isend(bufs[1], rank, TAG_PARAMS)]
                self.sends.append((reqs, bufs))
