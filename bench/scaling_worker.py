"""One measurement under mpiexec (started by bench/scaling.py): prints one JSON line on rank 0.

    mpiexec -n P python bench/scaling_worker.py train --batch-per-rank 512 | --global-batch 512
    mpiexec -n P python bench/scaling_worker.py ceiling --batch-per-rank 512 | --global-batch 512
    mpiexec -n P python bench/scaling_worker.py torch-ddp --batch-per-rank 512
    mpiexec -n P python bench/scaling_worker.py allreduce
    mpiexec -n 2 python bench/scaling_worker.py p2p

``ceiling``: every rank runs the same local steps as ``train`` with no communication (its own
one-rank model), the compute-only ceiling of P processes on this machine. ``p2p``: the
point-to-point bandwidth between ranks 0 and 1 (ping-pong of the gradient buffer's size).
``train --sha`` also prints the SHA-256 of the parameters after the steps.
"""

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (native BLAS kernel, one thread per rank)

import numpy as np  # noqa: E402

from mpinn.keras import Sequential  # noqa: E402
from mpinn.nn import Dense  # noqa: E402
from mpinn.optim import SGD  # noqa: E402
from mpinn.parallel import Communicator, DataParallel  # noqa: E402
from mpinn.plan.calibrate import Sizes, ping_pong, timed_calls  # noqa: E402
from cluster_scaling_worker import torch_ddp_step  # noqa: E402  (the same PyTorch DDP peer)

WIDTHS = (784, 1024, 1024, 1024, 10)


def mpinn_model() -> Sequential:
    model = Sequential(seed=0)
    for i, units in enumerate(WIDTHS[1:]):
        model.add(Dense(units, input_dim=WIDTHS[i],
                        activation="softmax" if i == len(WIDTHS) - 2 else "relu"))
    model.compile(SGD(lr=0.01), loss="sparse_categorical_crossentropy")
    return model


def train(args, comm) -> dict:
    global_batch = args.global_batch or args.batch_per_rank * comm.size
    model = mpinn_model()
    strategy = DataParallel(comm, bucket_mb=args.bucket_mb,
                            deterministic=args.deterministic, group_size=args.group_size)
    strategy.setup(model)
    rng = np.random.default_rng(0)
    x = rng.random((global_batch, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], size=global_batch)
    batch = np.arange(global_batch)
    for _ in range(args.warmup):
        strategy.train_step(model, x, y, batch)
    comm_before = strategy.comm_seconds
    times = timed_calls(comm, lambda: strategy.train_step(model, x, y, batch), args.steps)
    comm_per_step = (strategy.comm_seconds - comm_before) / args.steps
    step = statistics.median(times)
    result = {"step_s": step, "comm_s": comm_per_step, "compute_s": step - comm_per_step,
              "global_batch": global_batch, "samples_per_s": global_batch / step}
    if args.sha:
        result["sha256"] = hashlib.sha256(model.params.tobytes()).hexdigest()
    return result


def ceiling(args, comm) -> dict:
    """The same local work as ``train`` on every rank, without communicating: each rank steps
    its own one-rank model on its share of rows. The slowest rank's median step counts."""
    rows = args.global_batch // comm.size if args.global_batch else args.batch_per_rank
    model = mpinn_model()
    strategy = DataParallel(Communicator.local())
    strategy.setup(model)
    rng = np.random.default_rng(comm.rank)
    x = rng.random((rows, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], size=rows)
    batch = np.arange(rows)
    for _ in range(args.warmup):
        strategy.train_step(model, x, y, batch)
    times = timed_calls(comm, lambda: strategy.train_step(model, x, y, batch), args.steps)
    step = comm.allreduce_obj(statistics.median(times), "max")
    return {"step_s": step, "rows_per_rank": rows, "samples_per_s": rows * comm.size / step}


def p2p(args, comm) -> dict:
    """One-way time and bandwidth of a message of the gradient buffer's size, rank 0 to 1
    (the calibration's ping-pong)."""
    nbytes = mpinn_model().grads.nbytes
    [(_, one_way)] = ping_pong(comm, 1, Sizes(p2p_bytes=(nbytes,), repeats=args.steps))
    return {"bytes": nbytes, "one_way_s": one_way, "bytes_per_s": nbytes / one_way}


def torch_ddp(args, comm) -> dict:
    import torch.distributed as dist

    step = torch_ddp_step(comm, list(WIDTHS), args.batch_per_rank * comm.size, f"127.0.0.1:{args.port}")
    for _ in range(args.warmup):
        step()
    step_s = statistics.median(timed_calls(comm, step, args.steps))
    dist.destroy_process_group()
    return {"step_s": step_s, "global_batch": args.batch_per_rank * comm.size,
            "samples_per_s": args.batch_per_rank * comm.size / step_s}


def allreduce(args, comm) -> dict:
    """One Allreduce of the whole buffer vs mpinn's reduction path (DataParallel buckets).

    Each size uses a one-layer model whose gradient buffer has that size; the last row is
    the 784-1024-1024-1024-10 model itself, reduced in its 4 MB buckets.
    """
    models = [Sequential([Dense(256, input_dim=max(1, 2**k // 4 // 256 - 1))])
              for k in range(12, 25, 2)] + [mpinn_model()]
    rows = []
    for model in models:
        strategy = DataParallel(comm, bucket_mb=args.bucket_mb)
        strategy.setup(model)
        raw = np.ones_like(model.grads)

        def mpinn_path():
            strategy.reducer.begin()
            strategy.reducer.finish()
        raw_s = statistics.median(timed_calls(comm, lambda: comm.Allreduce(raw), args.steps))
        mpinn_s = statistics.median(timed_calls(comm, mpinn_path, args.steps))
        rows.append({"bytes": model.grads.nbytes, "buckets": len(strategy.reducer.buckets),
                     "raw_mpi_s": raw_s, "mpinn_s": mpinn_s})
    return {"allreduce": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "ceiling", "torch-ddp", "allreduce", "p2p"])
    parser.add_argument("--batch-per-rank", type=int, default=512)
    parser.add_argument("--global-batch", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bucket-mb", type=float, default=4.0)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--deterministic", action="store_true", help="train: exact sums mode")
    parser.add_argument("--group-size", type=int, default=128, help="train: deterministic groups")
    parser.add_argument("--sha", action="store_true", help="train: print the parameters' SHA-256")
    args = parser.parse_args()
    comm = Communicator.world()
    modes = {"train": train, "ceiling": ceiling, "torch-ddp": torch_ddp, "allreduce": allreduce, "p2p": p2p}
    result = modes[args.mode](args, comm)
    if comm.rank == 0:
        print(json.dumps({"mode": args.mode, "ranks": comm.size, **result}), flush=True)


if __name__ == "__main__":
    main()
