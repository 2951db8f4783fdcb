"""The runner that executes one stage's program of a pipeline schedule (see mpinn.layout.schedule).

Activations go forward and activation gradients backward by point-to-point messages tagged
with their micro-batch. Sends are non-blocking (Isend; completed at the end of the step);
before each forward or backward the runner posts the Irecv of the next message it will
need, so that transfer overlaps the compute. A schedule that passed ``validate`` cannot
deadlock under exactly these rules. Each micro-batch in flight runs on its own
``shared_copy`` of the stage (same flat buffers, its own layer caches), so the activations
kept are those of the micro-batches the schedule has in flight, no more.
"""

from __future__ import annotations

import time

import numpy as np

from mpinn.nn import Head, Sequential
from mpinn.parallel.comm import Communicator
from mpinn.layout.schedule import (BACKWARD, COMPUTE, FORWARD, RECEIVES, RECV_ACTIVATION, RECV_GRAD,
                                   SEND_ACTIVATION, Action)
from mpinn.nn.step import head_tally


def tag(action: Action) -> int:
    """Message tag: activations and gradients of each micro-batch never match each other."""
    is_gradient = action.kind not in (SEND_ACTIVATION, RECV_ACTIVATION)
    return 2 * action.micro_batch + is_gradient


class PipelineRunner:
    """Runs the programs of one stage over ``comm`` (rank s of the pipeline group = stage s)."""

    def __init__(self, stage_model: Sequential, comm: Communicator, in_width: int, out_width: int,
                 head: Head | None = None) -> None:
        self.model, self.head = stage_model, head
        self.comm = comm
        self.stage, self.stages = comm.rank, comm.size
        self.widths = {RECV_ACTIVATION: in_width, RECV_GRAD: out_width}
        self.is_last = self.stage == self.stages - 1
        self._free: list[Sequential] = []
        self.replicas = 0  # shared copies made so far: the most micro-batches ever in flight
        self.compute_seconds = 0.0

    def run(self, program: list[Action], x: np.ndarray, y: np.ndarray, chunks: list[np.ndarray],
            n_global: int, training: bool, on_grads_ready=None, after_backward=None,
            summable=None) -> np.ndarray:
        """Execute ``program`` on micro-batches of rows ``chunks`` of (x, y); return the tally
        (non-zero on the last stage), each micro-batch's through ``summable`` (if any). Each
        loss gradient is weighted by rows / ``n_global``. ``on_grads_ready`` goes to the last
        backward; ``after_backward()`` is called after each."""
        self._x, self._y, self._chunks, self._n_global = x, y, chunks, n_global
        self._training, self._hook, self._after = training, on_grads_ready, after_backward
        self._summable = summable or (lambda tally: tally)
        self._last_backward = max((i for i, a in enumerate(program) if a.kind == BACKWARD), default=-1)
        self._program, self._posted, self._sends = program, {}, []
        self._inbox, self._outbox, self._running = {}, {}, {}
        self._tally = np.zeros(3)
        for i, action in enumerate(program):
            self._execute(i, action)
        self.comm.Waitall([request for request, _ in self._sends])
        return self._tally

    def _execute(self, i: int, action: Action) -> None:
        if action.kind in RECEIVES:
            self._receive(i, action)
        elif action.kind in COMPUTE:
            self._post_next_receive(i)
            start = time.perf_counter()
            (self._forward if action.kind == FORWARD else self._backward)(i, action)
            self.compute_seconds += time.perf_counter() - start
            self._progress()
        else:
            buf = self._outbox.pop(action.micro_batch)
            dest = self.stage + (1 if action.kind == SEND_ACTIVATION else -1)
            self._sends.append((self.comm.Isend(buf, dest, tag(action)), buf))
            self._progress()

    def _progress(self) -> None:
        """Let MPI move pending messages (without an asynchronous progress thread, a large
        message only advances while both ends are inside MPI calls) and let go of the buffers of
        completed sends, so that 1F1B really holds only what it has in flight."""
        self._sends = [(request, buf) for request, buf in self._sends if not self.comm.Test(request)]
        if self._posted:
            self.comm.Testall([request for request, _ in self._posted.values()])

    def _post(self, i: int) -> None:
        action = self._program[i]
        rows = len(self._chunks[action.micro_batch])
        buf = np.empty((rows, self.widths[action.kind]), dtype=self.model.dtype)
        source = self.stage + (-1 if action.kind == RECV_ACTIVATION else 1)
        self._posted[i] = (self.comm.Irecv(buf, source, tag(action)), buf)

    def _post_next_receive(self, i: int) -> None:
        following = (j for j in range(i + 1, len(self._program)) if self._program[j].kind in RECEIVES)
        j = next(following, None)
        if j is not None and j not in self._posted:
            self._post(j)

    def _receive(self, i: int, action: Action) -> None:
        if i not in self._posted:
            self._post(i)
        request, buf = self._posted.pop(i)
        self.comm.Waitall([request])
        self._inbox[action.micro_batch] = buf

    def _forward(self, i: int, action: Action) -> None:
        k = action.micro_batch
        rows = self._chunks[k]
        x = self._x[rows] if self.stage == 0 else self._inbox.pop(k)
        replica = self._free.pop() if self._free else self._new_replica()
        stop = self.head.stop if self.is_last else None
        out = replica.forward(x, training=self._training, stop=stop)
        if self.is_last:
            self._tally += self._summable(head_tally(self.head, out, self._y[rows]))
        else:
            self._outbox[k] = out
        if not self._training:
            self._free.append(replica)
            return
        self._running[k] = replica
        if self.is_last:  # the loss plays the next stage: its gradient arrives in the inbox
            self._inbox[k] = self.head.loss.backward() * (len(rows) / self._n_global)

    def _backward(self, i: int, action: Action) -> None:
        k = action.micro_batch
        dout = self._inbox.pop(k)
        replica = self._running.pop(k)
        dx = replica.backward(dout, need_input_grad=self.stage > 0,
                              on_grads_ready=self._hook if i == self._last_backward else None)
        if self._after is not None:
            self._after()
        self._free.append(replica)
        if dx is not None:
            self._outbox[k] = dx

    def _new_replica(self) -> Sequential:
        self.replicas += 1
        return self.model.shared_copy()
