"""One measured run for bench/shrink.py, under Open MPI's ``mpiexec --with-ft ulfm``: the
784-1024-1024-1024-10 model, SGD, 512 samples per rank of the launch, ``fit`` with
``--on-failure``; with ``--kill-step S --kill-rank r`` the rank the launcher numbered r notes
the time and kills itself (SIGKILL) when step S ends. Rank 0 of the end prints one JSON line:
the wall time at every logged step, the kill time, the optimizer's step count and the
parameters' SHA-256."""

import argparse
import hashlib
import json
import os
import signal
import time

import numpy as np

from mpinn.keras import Sequential
from mpinn.keras.layers import Dense
from mpinn.launcher import launch_rank, launch_size
from mpinn.optim import SGD
from mpinn.parallel import Communicator, DataParallel
from mpinn.train import Callback, fit

WIDTHS = (784, 1024, 1024, 1024, 10)


class Clock(Callback):
    """The wall time at each logged step (and, on the victim, the kill)."""

    def __init__(self, kill_step: int, kill_rank: int, kill_file: str) -> None:
        self.times: list[tuple[int, float]] = []
        self.kill = (kill_step, kill_rank, kill_file)

    def on_step_end(self, record) -> None:
        now = time.time()
        self.times.append((record["step"], now))
        step, rank, path = self.kill
        if record["step"] == step and launch_rank() == rank:
            with open(path, "w") as f:
                f.write(repr(now))
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--on-failure", default="abort")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--batch-per-rank", type=int, default=512)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--kill-step", type=int, default=0)
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-file", default="")
    args = parser.parse_args()
    batch = args.batch_per_rank * (launch_size() or 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * args.steps, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], len(x))
    model = Sequential([Dense(WIDTHS[1], input_dim=WIDTHS[0], activation="relu"),
                        *[Dense(w, activation="relu") for w in WIDTHS[2:-1]],
                        Dense(WIDTHS[-1], activation="softmax")], seed=0)
    model.compile(SGD(lr=0.01), loss="sparse_categorical_crossentropy")
    comm = Communicator.world()
    clock = Clock(args.kill_step, args.kill_rank, args.kill_file)
    fit(model, x, y, epochs=1, batch_size=batch, shuffle=False, verbose=0, callbacks=[clock],
        log_every=args.log_every, on_failure=args.on_failure,
        strategy=DataParallel(comm, deterministic=args.deterministic))
    if comm.is_root:
        print(json.dumps({"ranks_at_end": comm.size, "times": clock.times,
                          "optimizer_steps": model.optimizer.steps,
                          "sha256": hashlib.sha256(model.params).hexdigest()}), flush=True)


if __name__ == "__main__":
    main()
