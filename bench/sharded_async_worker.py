"""One measurement under mpiexec (started by bench/sharded_async.py); rank 0 prints one JSON line.

    mpiexec -n P python bench/sharded_async_worker.py train --strategy async --staleness 4 --delay-ms 5
    mpiexec -n P python bench/sharded_async_worker.py memory --strategy zero --zero-stage 2

Strategies are built by name from mpinn's registry, with the options given here.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (native BLAS kernel, one thread per rank)

import numpy as np  # noqa: E402

import mpinn.train  # noqa: E402
from mpinn import registry  # noqa: E402
from mpinn.data import digits  # noqa: E402
from mpinn.keras import Sequential  # noqa: E402
from mpinn.nn import Dense  # noqa: E402
from mpinn.optim import Adam  # noqa: E402
from mpinn.parallel import Communicator, ZeroDataParallel  # noqa: E402
from mpinn.train import Callback  # noqa: E402


def make_strategy(args, comm):
    """The strategy asked for, with its first worker sleeping ``delay_ms`` before each step."""
    entry = registry.get(args.strategy)
    strategy = entry.build(comm, entry.make_options(vars(args)))
    slow_rank = 1 if args.strategy == "async" and comm.size > 1 else 0
    if args.delay_ms and comm.rank == slow_rank:
        step = strategy.train_step

        def slowed(*step_args, **kwargs):
            time.sleep(args.delay_ms / 1e3)
            return step(*step_args, **kwargs)

        strategy.train_step = slowed
    return strategy


COMPARED = tuple(name for name in registry.names() if name in ("data", "zero", "async", "local-sgd"))


class EpochClock(Callback):
    """Seconds since training began and validation accuracy at each epoch end."""

    def on_train_begin(self, *args) -> None:
        self.start, self.points = time.perf_counter(), []

    def on_epoch_end(self, epoch, values) -> None:
        self.points.append((time.perf_counter() - self.start, values["val_accuracy"]))


def train(args, comm) -> dict:
    data = digits()
    model = Sequential([Dense(64, input_dim=64, activation="relu"), Dense(10, activation="softmax")], seed=0)
    model.compile(Adam(lr=0.003), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = EpochClock()
    mpinn.train.fit(model, data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch,
                    validation_data=(data.x_test, data.y_test), strategy=make_strategy(args, comm),
                    callbacks=[clock], log_every=10**9)
    seconds = clock.points[-1][0]
    reached = [t for t, accuracy in clock.points if accuracy >= args.target]
    return {"seconds": seconds, "samples_per_s": args.epochs * len(data.x_train) / seconds,
            "final_accuracy": clock.points[-1][1], "time_to_target_s": reached[0] if reached else None,
            "epoch_points": clock.points}


def memory(args, comm) -> dict:
    widths = (784, 2048, 2048, 10)
    model = Sequential([Dense(widths[1], input_dim=widths[0], activation="relu"),
                        Dense(widths[2], activation="relu"), Dense(widths[3], activation="softmax")], seed=0)
    model.compile(Adam(lr=1e-3), loss="sparse_categorical_crossentropy")
    strategy = make_strategy(args, comm)
    strategy.setup(model)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], size=args.batch)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        strategy.train_step(model, x, y, np.arange(args.batch))
        times.append(time.perf_counter() - start)
    if isinstance(strategy, ZeroDataParallel):
        held = strategy.memory_bytes(model)
    else:
        state = sum(a.nbytes for a in model.optimizer.state.values())
        held = {"optimizer_state": state, "reduced_gradient": model.grads.nbytes,
                "params": model.params.nbytes, "gradient_buffer": model.grads.nbytes}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per_rank = comm.allgather_obj({**held, "max_rss": rss})
    return {"params": model.params.size, "step_s": float(np.median(times[1:])), "per_rank": per_rank}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "memory"])
    parser.add_argument("--strategy", default="data", choices=COMPARED)
    for option in ("zero_stage", "staleness", "sync_every"):  # default: the registry's
        parser.add_argument("--" + option.replace("_", "-"), type=int, default=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    comm = Communicator.world()
    result = train(args, comm) if args.mode == "train" else memory(args, comm)
    if comm.is_root:
        print(json.dumps({"ranks": comm.size, **vars(args), **result}))


if __name__ == "__main__":
    main()
