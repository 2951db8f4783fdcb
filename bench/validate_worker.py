"""One measured layout under mpiexec (started by bench/validate_model.py): prints one JSON line.

    mpiexec -n P python bench/validate_worker.py --data 2 --pipeline 1 --tensor 1 [--zero]
        [--micro-batches M] [--batch 512] [--model 784,1024,1024,1024,10]

Builds the real strategy for the layout (DataParallel, ZeroDataParallel, or ModelParallel on
a data x pipeline x tensor grid), runs warm-up steps, then times steps with a barrier before
each (the slowest rank's median).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (native BLAS kernel, one thread per rank)

import numpy as np  # noqa: E402

from mpinn.keras import Sequential  # noqa: E402
from mpinn.nn import Dense  # noqa: E402
from mpinn.optim import SGD  # noqa: E402
from mpinn.parallel import Communicator, DataParallel  # noqa: E402


def build_model(widths: list[int]) -> Sequential:
    model = Sequential(seed=0)
    for i, units in enumerate(widths[1:]):
        last = i == len(widths) - 2
        model.add(Dense(units, input_dim=widths[i], activation="softmax" if last else "relu"))
    model.compile(SGD(lr=0.01), loss="sparse_categorical_crossentropy")
    return model


def build_strategy(args, comm: Communicator):
    if args.pipeline == 1 and args.tensor == 1:
        if not args.zero:
            return DataParallel(comm)
        from mpinn.parallel.zero import ZeroDataParallel

        return ZeroDataParallel(comm, stage=2)
    from mpinn.layout import GridShape
    from mpinn.parallel.model_parallel import ModelParallel

    return ModelParallel(comm, GridShape(args.data, args.pipeline, args.tensor),
                         micro_batches=args.micro_batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("data", "pipeline", "tensor", "micro-batches"):
        parser.add_argument("--" + name, type=int, default=1)
    parser.add_argument("--zero", action="store_true")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--model", default="784,1024,1024,1024,10")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    comm = Communicator.world()
    widths = [int(w) for w in args.model.split(",")]
    model = build_model(widths)
    strategy = build_strategy(args, comm)
    strategy.setup(model)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], size=args.batch)
    batch = np.arange(args.batch)
    for _ in range(args.warmup):
        strategy.train_step(model, x, y, batch)
    times = []
    for _ in range(args.steps):
        comm.barrier()
        start = time.perf_counter()
        strategy.train_step(model, x, y, batch)
        times.append(time.perf_counter() - start)
    slowest = comm.allgather_obj(statistics.median(times))
    if comm.is_root:
        print(json.dumps({"ranks": comm.size, "step_s": max(slowest)}), flush=True)


if __name__ == "__main__":
    main()
