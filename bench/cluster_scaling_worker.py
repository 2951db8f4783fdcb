"""Times several layouts in one MPI job (started by bench/cluster_scaling.py); prints one JSON line.

    mpiexec -n P python bench/cluster_scaling_worker.py --items compute,data,data-flat,zero,
        allreduce,grid:1,2,1,4 [--batch 512] [--model 784,1024,1024,1024,10] [--steps 4]

Items: ``compute`` (the data-parallel step with no communication: each rank trains its rows
alone, all ranks at once), ``data`` (DataParallel, default buckets, overlapped), ``data-flat``
(one Allreduce after backward), ``data-bucket=MB``, ``zero`` (ZeRO-2), ``allreduce`` (raw
MPI.Allreduce of a buffer the size of the gradients), ``allgather``, ``allgatherv-in-place``
and ``comm-allgatherv`` (the same buffer gathered from equal parts by MPI's Allgather, by MPI's
in-place Allgatherv, and by ``Communicator.Allgatherv``, which ZeRO calls), ``torch-ddp`` (PyTorch DDP over gloo,
where torch is installed; put it last) and ``grid:D,P,T,M`` (ModelParallel on
a data x pipeline x tensor grid with M micro-batches). Each is timed over --steps steps with
a barrier before each (median per rank, slowest rank), after one warm-up step. With
--link-counter, each node's first rank also reads its eth0 transmit counter around the timed
steps: the bytes its node sent into its link per step (largest node).
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (sets one BLAS thread per rank)

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from mpinn.layout import GridShape  # noqa: E402
from mpinn.parallel import Communicator, DataParallel, ModelParallel  # noqa: E402
from mpinn.parallel.zero import ZeroDataParallel  # noqa: E402
from validate_worker import build_model  # noqa: E402  (the same MLP the planner check times)

TX_BYTES = Path("/sys/class/net/eth0/statistics/tx_bytes")


def _allgatherv_in_place(mpi: MPI.Comm, whole: np.ndarray, p: int):
    counts = [whole.size // p] * p
    displacements = [r * counts[0] for r in range(p)]
    return lambda: mpi.Allgatherv(MPI.IN_PLACE, [whole, (counts, displacements)])


def _communicator_allgatherv(mpi: MPI.Comm, whole: np.ndarray, p: int):
    comm, counts = Communicator(mpi), [whole.size // p] * p
    return lambda: comm.Allgatherv(whole, counts)


RAW_COLLECTIVES = {  # on a buffer the size of the gradients (rounded down to p equal parts)
    "allreduce": lambda mpi, whole, p: lambda: mpi.Allreduce(MPI.IN_PLACE, whole),
    "allgather": lambda mpi, whole, p: lambda: mpi.Allgather(whole[:whole.size // p].copy(), whole),
    "allgatherv-in-place": _allgatherv_in_place,  # MPI's own: 30-40x slower on MPICH 5
    "comm-allgatherv": _communicator_allgatherv,  # what ZeroDataParallel calls after its update
}


def strategy_for(item: str, comm: Communicator):
    if item == "data":
        return DataParallel(comm)
    if item == "data-flat":
        return DataParallel(comm, overlap=False)
    if item.startswith("data-bucket="):
        return DataParallel(comm, bucket_mb=float(item.split("=")[1]))
    if item == "zero":
        return ZeroDataParallel(comm, stage=2)
    data, pipeline, tensor, micro = (int(v) for v in item.split(":")[1].split(","))
    return ModelParallel(comm, GridShape(data, pipeline, tensor), micro_batches=micro)


def step_function(item: str, comm: Communicator, widths: list[int], batch: int):
    """A no-argument callable running one step of ``item`` on this rank."""
    rng = np.random.default_rng(0)
    if item in RAW_COLLECTIVES:
        size = build_model(widths).params.size // comm.size * comm.size
        return RAW_COLLECTIVES[item](comm.mpi, np.ones(size, dtype=np.float32), comm.size)
    rows = math.ceil(batch / comm.size) if item == "compute" else batch
    x = rng.random((rows, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], size=rows)
    model, indices = build_model(widths), np.arange(rows)
    strategy = DataParallel(Communicator.local()) if item == "compute" else strategy_for(item, comm)
    strategy.setup(model)
    return lambda: strategy.train_step(model, x, y, indices)


def torch_ddp_step(comm: Communicator, widths: list[int], batch: int, master: str):
    """One PyTorch DDP (gloo) step on this rank's share of the batch: the peer's data parallel."""
    import os

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    address, port = master.rsplit(":", 1)
    os.environ.update(MASTER_ADDR=address, MASTER_PORT=port)
    dist.init_process_group("gloo", rank=comm.rank, world_size=comm.size)
    layers = []
    for i, units in enumerate(widths[1:]):
        layers += [torch.nn.Linear(widths[i], units)] + ([torch.nn.ReLU()] if i < len(widths) - 2 else [])
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(*layers))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = math.ceil(batch / comm.size)
    rng = np.random.default_rng(comm.rank)
    x = torch.from_numpy(rng.random((rows, widths[0]), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, widths[-1], size=rows))

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return step


def node_leader(comm: Communicator) -> bool:
    node = comm.mpi.Split_type(MPI.COMM_TYPE_SHARED)
    first = node.Get_rank() == 0
    node.Free()
    return first


def measure(item: str, comm: Communicator, args, leader: bool) -> dict:
    widths = [int(w) for w in args.model.split(",")]
    step = (torch_ddp_step(comm, widths, args.batch, args.torch_master) if item == "torch-ddp"
            else step_function(item, comm, widths, args.batch))
    step()
    counter = leader and args.link_counter and TX_BYTES.exists()
    sent_before = int(TX_BYTES.read_text()) if counter else 0
    times = []
    for _ in range(args.steps):
        comm.barrier()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    sent = (int(TX_BYTES.read_text()) - sent_before) / args.steps if counter else 0.0
    slowest = comm.allgather_obj(statistics.median(times))
    link = max(comm.allgather_obj(sent))
    return {"step_s": max(slowest), "link_bytes_per_step": link if args.link_counter else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", required=True, help="items separated by ';'")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--model", default="784,1024,1024,1024,10")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--link-counter", action="store_true")
    parser.add_argument("--torch-master", default="127.0.0.1:29533",
                        help="ADDRESS:PORT of rank 0 for the torch-ddp item (gloo's rendezvous)")
    args = parser.parse_args()
    comm = Communicator.world()
    leader = node_leader(comm)
    results = {item: measure(item, comm, args, leader) for item in args.items.split(";")}
    if comm.is_root:
        print(json.dumps({"ranks": comm.size, "results": results}), flush=True)


if __name__ == "__main__":
    main()
