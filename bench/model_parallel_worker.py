"""Model-parallel measurements under mpiexec (started by bench/model_parallel.py); rank 0 prints
one JSON line. The model: WIDTH-wide Dense layers (ReLU) and a 10-way softmax output.

    mpiexec -n N python bench/model_parallel_worker.py --steps 8 --batch 512 --width 512
"""

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (native BLAS kernel, one thread per rank)

import numpy as np  # noqa: E402

from mpinn.layout import GridShape, one_f_one_b, gpipe, peak_in_flight, simulate  # noqa: E402
from mpinn.keras import Sequential  # noqa: E402
from mpinn.nn import Dense  # noqa: E402
from mpinn.optim import SGD  # noqa: E402
from mpinn.parallel import Communicator, DataParallel, ModelParallel  # noqa: E402

MICRO_BATCHES = (1, 2, 4, 8, 16)


def make_model(width: int, layers: int) -> Sequential:
    model = Sequential(seed=0)
    for i in range(layers):
        model.add(Dense(width, input_dim=width, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    model.compile(SGD(lr=0.01), loss="sparse_categorical_crossentropy")
    model.build()
    return model


def make_data(width: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, width)).astype(np.float32), rng.integers(0, 10, batch)


def timed_step(strategy, model, x, y, comm: Communicator) -> tuple[float, float]:
    """(makespan over ranks, this rank's pipeline compute seconds) of one step from a barrier."""
    busy = getattr(getattr(strategy, "runner", None), "compute_seconds", 0.0)
    comm.barrier()
    start = time.perf_counter()
    strategy.train_step(model, x, y, np.arange(len(x)))
    mine = time.perf_counter() - start
    busy = getattr(getattr(strategy, "runner", None), "compute_seconds", 0.0) - busy
    return comm.allreduce_obj(mine, "max"), busy


def median_step(strategy, model, x, y, comm, steps: int) -> tuple[float, float, list[float]]:
    """Median makespan, median idle fraction (mean over ranks) and each rank's median compute
    seconds, after one warm-up step."""
    strategy.setup(model)
    timed_step(strategy, model, x, y, comm)
    spans, bubbles, busies = [], [], []
    for _ in range(steps):
        span, busy = timed_step(strategy, model, x, y, comm)
        spans.append(span)
        busies.append(busy)
        bubbles.append(comm.allreduce_obj(1 - busy / span) / comm.size)
    return statistics.median(spans), statistics.median(bubbles), comm.allgather_obj(statistics.median(busies))


def bubbles(args, comm) -> list[dict]:
    x, y = make_data(args.width, args.batch)
    rows = []
    for m in MICRO_BATCHES:
        strategy = ModelParallel(comm, GridShape(pipeline=comm.size), m, "1f1b")
        span, bubble, busy = median_step(strategy, make_model(args.width, args.layers), x, y, comm,
                                         args.steps)
        rows.append({"micro_batches": m, "step_s": span, "measured_bubble": bubble, "compute_s": busy,
                     "schedule_bubble": simulate(one_f_one_b(comm.size, m), comm.size)["bubble"],
                     "formula": (comm.size - 1) / (m + comm.size - 1)})
    return rows


def parameter_bytes(args, comm) -> list[dict]:
    model = make_model(args.width, args.layers)
    rows = []
    for name, grid in (("pipeline", GridShape(pipeline=comm.size)), ("tensor", GridShape(tensor=comm.size))):
        strategy = ModelParallel(comm, grid)
        strategy.setup(model)
        local = strategy.part.model.params.nbytes
        rows.append({"strategy": name, "whole_bytes": model.params.nbytes,
                     "per_rank_bytes": comm.allgather_obj(local)})
    return rows


def activation_memory(args, comm, micro_batches: int = 8) -> list[dict]:
    """Peak bytes traced during one step (after a warm-up step), per stage, for each schedule,
    on a batch large enough that activations outweigh the weight-gradient temporaries."""
    x, y = make_data(args.width, args.memory_batch)
    rows = []
    for name, make in (("gpipe", gpipe), ("1f1b", one_f_one_b)):
        model = make_model(args.width, args.layers)
        strategy = ModelParallel(comm, GridShape(pipeline=comm.size), micro_batches, name)
        strategy.setup(model)
        strategy.train_step(model, x, y, np.arange(len(x)))
        tracemalloc.start()
        strategy.train_step(model, x, y, np.arange(len(x)))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"schedule": name, "micro_batches": micro_batches,
                     "peak_bytes": comm.allgather_obj(peak),
                     "in_flight": [peak_in_flight(make(comm.size, micro_batches), s)
                                   for s in range(comm.size)]})
    return rows


def step_times(args, comm) -> list[dict]:
    """One step of the same model and global batch under each strategy, and on one rank."""
    x, y = make_data(args.width, args.batch)
    strategies = {"data": lambda: DataParallel(comm),
                  "pipeline (1f1b, m=4)": lambda: ModelParallel(comm, GridShape(pipeline=comm.size), 4),
                  "tensor": lambda: ModelParallel(comm, GridShape(tensor=comm.size))}
    rows = []
    for name, make in strategies.items():
        span, _, _ = median_step(make(), make_model(args.width, args.layers), x, y, comm, args.steps)
        rows.append({"strategy": name, "step_s": span})
    if comm.is_root:  # alone, while the other ranks wait: no competition for the cores
        local = Communicator.local()
        model = make_model(args.width, args.layers)
        span, _, _ = median_step(DataParallel(local), model, x, y, local, args.steps)
        rows.append({"strategy": "one rank", "step_s": span})
    comm.barrier()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--memory-batch", type=int, default=4096)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4, help="hidden layers")
    args = parser.parse_args()
    comm = Communicator.world()
    result = {"ranks": comm.size, "batch": args.batch, "memory_batch": args.memory_batch,
              "width": args.width, "layers": args.layers,
              "parameter_bytes": parameter_bytes(args, comm),
              "activation_memory": activation_memory(args, comm),
              "bubble": bubbles(args, comm), "step_time": step_times(args, comm)}
    if comm.is_root:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
