"""Under mpiexec: the cost of fit's watchdog and heartbeat records against a training step.

For each model, ``fit`` runs one epoch with the watchdog on (heartbeat records in a temporary
folder) and one with it off, alternating, ``rounds`` times; the medians of the time per step
give the measured overhead. The heartbeat's own share is also modelled: communicator calls
per step times the cost of one record update (enter + leave, timed alone).
Rank 0 prints one JSON object.
"""

import json
import statistics
import sys
import tempfile
import time

import mpinn.train
from mpinn.data import make_classification
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import SGD
from mpinn.parallel import Communicator, DataParallel
from mpinn.parallel.heartbeat import Heartbeat
from mpinn.train import Callback

MODELS = {"digits default 64-64-10, batch 32": (64, 64, 10, 32),
          "784-256-10, batch 128": (784, 256, 10, 128)}


class CallCounter(Callback):
    """Communicator calls per step, read from the heartbeat record at the end of training."""

    def __init__(self, comm):
        self.comm, self.calls, self.steps = comm, 0, 0

    def on_train_begin(self, logs=None):
        self.steps = self.params["epochs"] * self.params["steps"]

    def on_train_end(self, logs=None):
        self.calls = self.comm.shared.heartbeat.sequence


def seconds_per_step(comm, widths, x, y, batch, watchdog, callbacks=()):
    model = Sequential([Dense(widths[1], input_dim=widths[0], activation="relu"),
                        Dense(widths[2], activation="softmax")], seed=0)
    model.compile(SGD(), loss="sparse_categorical_crossentropy")
    comm.barrier()
    start = time.perf_counter()
    mpinn.train.fit(model, x, y, epochs=1, batch_size=batch, verbose=0, strategy=DataParallel(comm),
                    watchdog=watchdog, callbacks=list(callbacks))
    return (time.perf_counter() - start) / -(-len(x) // batch)


def record_update_seconds(repeats=200_000):
    beat = Heartbeat(tempfile.mkdtemp(prefix="mpinn-bench-"), 0, 1)
    start = time.perf_counter()
    for _ in range(repeats):
        beat.enter(b"Allreduce", True)
        beat.leave()
    seconds = (time.perf_counter() - start) / repeats
    beat.close()
    return seconds


def main(rounds):
    comm = Communicator.world()
    rows = []
    for name, (inputs, hidden, classes, batch) in MODELS.items():
        x, y = make_classification(n_samples=64 * batch, n_features=inputs, n_classes=classes, seed=0)
        counter = CallCounter(comm)
        seconds_per_step(comm, (inputs, hidden, classes), x, y, batch, 600, [counter])  # warm-up
        on, off = [], []
        for _ in range(rounds):
            off.append(seconds_per_step(comm, (inputs, hidden, classes), x, y, batch, 0))
            on.append(seconds_per_step(comm, (inputs, hidden, classes), x, y, batch, 600))
        update = record_update_seconds()
        step_off, step_on = statistics.median(off), statistics.median(on)
        calls = counter.calls / counter.steps
        rows.append({"model": name, "ranks": comm.size, "step_s_watchdog_off": step_off,
                     "step_s_watchdog_on": step_on, "measured_overhead": step_on / step_off - 1,
                     "calls_per_step": calls, "record_update_s": update,
                     "heartbeat_share_of_step": calls * update / step_off})
    if comm.is_root:
        print(json.dumps({"rounds": rounds, "results": rows}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
