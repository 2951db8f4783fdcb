"""``mpinn calibrate``: measure this machine (or allocation) and build a planner profile.

Every rank measures matmuls and streaming bandwidth at the same time (so contention between
ranks on a node is included); rank 0 ping-pongs with a rank on its node and with one on
another node; Allreduce, reduce-scatter and allgather are timed over message sizes and
fitted to the alpha-beta formulas of :mod:`mpinn.plan.costs`; an Iallreduce that runs
while the rank computes (testing it between chunks, as DataParallel's backward hooks do)
measures how much communication overlaps compute. The result is the JSON profile of
:mod:`mpinn.plan.profile`, returned on rank 0.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mpinn.parallel.comm import Communicator
from mpinn.plan import fit, measure
from mpinn.plan.profile import SCHEMA
from mpinn.plan.workload import ModelSpec


@dataclass(frozen=True)
class Sizes:
    """What to measure: message sizes, repetitions, matmul row counts."""

    p2p_bytes: tuple[int, ...] = (8, 512, 32768, 1048576, 8388608)
    collective_bytes: tuple[int, ...] = (64, 4096, 65536, 1048576, 4194304, 16777216)
    gemm_rows: tuple[int, ...] = (8, 32, 128, 512)
    repeats: int = 10
    stream_elements: int = 0  # 0: the model's parameter count (the optimizer's stream)
    overlap_bytes: int = 2**22
    compute_window_s: float = 0.03  # each matmul / streaming figure: mean over this long
    compute_passes: int = 3         # ... the fastest of this many passes (others' load only slows)


QUICK = Sizes((8, 4096, 65536), (64, 4096, 65536), (8, 32), 3, 2**16, 2**16, 0.002, 1)


def _repeats(nbytes: int, base: int) -> int:
    return base if nbytes <= 65536 else max(3, base // 3)


def timed_calls(comm: Communicator, op: Callable[[], object], repeats: int) -> list[float]:
    """This rank's wall time of each of ``repeats`` calls of ``op``, every call started
    together (a barrier before each)."""
    times = []
    for _ in range(repeats):
        comm.barrier()
        start = time.perf_counter()
        op()
        times.append(time.perf_counter() - start)
    return times


def _timed_max(comm: Communicator, op: Callable[[], object], repeats: int) -> float:
    """Median over repetitions of the slowest rank's time for one collective call."""
    op()
    slowest = comm.Allreduce(np.array(timed_calls(comm, op, repeats)), "max")
    return float(np.median(slowest))


def _collective_op(comm: Communicator, name: str, nbytes: int) -> Callable[[], object]:
    """One call of a collective as the strategies make it (ZeRO's in-place Allgatherv)."""
    p = comm.size
    elements = max(p, nbytes // 4 // p * p)
    whole = np.ones(elements, dtype=np.float32)
    part = np.ones(elements // p, dtype=np.float32)
    counts = [elements // p] * p
    return {"allreduce": lambda: comm.Allreduce(whole),
            "reduce_scatter": lambda: comm.Reduce_scatter(whole, part, counts),
            "allgather": lambda: comm.Allgatherv(whole, counts)}[name]


def measure_collectives(comm: Communicator, sizes: Sizes) -> dict:
    """Points and alpha-beta fits of every collective over ``comm``."""
    p, result = comm.size, {}
    for name, algorithms in fit.COLLECTIVE_ALGORITHMS.items():
        points = [(n, _timed_max(comm, _collective_op(comm, name, n), _repeats(n, sizes.repeats)))
                  for n in sizes.collective_bytes]
        cost, chosen = fit.fit_algorithms(points, p, algorithms)
        result[name] = {"ranks": p, "alpha_s": cost.alpha_s, "beta_s_per_byte": cost.beta_s_per_byte,
                        "points": [{"bytes": n, "seconds": t, "algorithm": a}
                                   for (n, t), a in zip(points, chosen)]}
    return result


def ping_pong(comm: Communicator, peer: int, sizes: Sizes) -> list[tuple[int, float]]:
    """One-way times (half the round trip) between rank 0 and ``peer``; collective call."""
    rank, points = comm.rank, []
    for nbytes in sizes.p2p_bytes:
        buf = np.zeros(nbytes, dtype=np.uint8)
        times = []
        for repeat in range(_repeats(nbytes, 5 * sizes.repeats) + 1):
            start = time.perf_counter()
            if rank == 0:
                comm.Send(buf, peer)
                comm.Recv(buf, peer)
            elif rank == peer:
                comm.Recv(buf, 0)
                comm.Send(buf, 0)
            if repeat:
                times.append((time.perf_counter() - start) / 2)
        points.append((nbytes, statistics.median(times) if times else 0.0))
    return comm.bcast_obj(points)


def link_entry(points: list[tuple[int, float]], collectives: dict | None) -> dict:
    cost = fit.fit_point_to_point(points)
    entry = {"latency_s": cost.alpha_s, "bandwidth_bytes_per_s": 1.0 / max(cost.beta_s_per_byte, 1e-15),
             "ping_pong": [{"bytes": n, "seconds": t} for n, t in points]}
    if collectives:
        entry["collectives"] = collectives
    return entry


def overlap_share(comm: Communicator, sizes: Sizes) -> float:
    """Share of an Iallreduce hidden behind compute that calls Testall between chunks."""
    buf = np.ones(sizes.overlap_bytes // 4, dtype=np.float32)
    chunk = np.ones((192, 192), dtype=np.float32)

    def compute(chunks: int, request=None) -> None:
        for _ in range(chunks):
            chunk @ chunk
            if request is not None:
                comm.Test(request)
    comm_s = _timed_max(comm, lambda: comm.Allreduce(buf), sizes.repeats)
    chunk_s = comm.bcast_obj(measure.median_call_seconds(lambda: compute(1), 10))
    chunks = max(1, round(comm_s / chunk_s))
    compute_s = _timed_max(comm, lambda: compute(chunks), sizes.repeats)

    def both() -> None:
        request = comm.Iallreduce(buf)
        compute(chunks, request)
        comm.Waitall([request])
    both_s = _timed_max(comm, both, sizes.repeats)
    hidden = (comm_s + compute_s - both_s) / min(comm_s, compute_s)
    return float(min(1.0, max(0.0, hidden)))


def measure_compute(comm: Communicator, spec: ModelSpec, sizes: Sizes, oversubscription: float) -> dict:
    """Matmul and streaming figures per core, medians over ranks measuring concurrently. The
    matmuls are the model's own and their slices for every tensor-parallel split of this many
    ranks: the planner reads a matmul's time off them (thin ones are far off any one fit)."""
    comm.barrier()
    splits = tuple(t for t in range(2, comm.size + 1) if comm.size % t == 0)
    passes = [measure.gemm_points(spec, list(sizes.gemm_rows), sizes.compute_window_s, splits)
              for _ in range(sizes.compute_passes)]
    points = [min(same, key=lambda point: point[3]) for same in zip(*passes)]
    elements = sizes.stream_elements or spec.num_params
    stream = max(measure.stream_bytes_per_s(elements, sizes.compute_window_s)
                 for _ in range(sizes.compute_passes))
    all_points = comm.allgather_obj(points)
    seconds = [statistics.median(r[i][3] for r in all_points) for i in range(len(points))]
    merged = [(m, k, n, t) for (m, k, n, _), t in zip(points, seconds)]
    flops, operand_bytes, overhead = fit.fit_gemm(merged)
    return {"gemm_flops_per_s": flops * oversubscription, "gemm_overhead_s": overhead / oversubscription,
            "gemm_bytes_per_s": min(operand_bytes * oversubscription, 1e18),
            "memory_bytes_per_s": statistics.median(comm.allgather_obj(stream)) * oversubscription,
            "measured_with_oversubscription": oversubscription,
            "gemm_points": [{"m": m, "k": k, "n": n, "seconds": t} for m, k, n, t in merged]}


def _node_layout(comm: Communicator) -> tuple[list[int], int]:
    """Node index of every rank (by shared-memory domain) and the most ranks on one node."""
    node_comm = comm.split_node()
    leader = node_comm.bcast_obj(comm.rank)
    node_comm.free()
    leaders = comm.allgather_obj(leader)
    index = {r: i for i, r in enumerate(sorted(set(leaders)))}
    nodes = [index[r] for r in leaders]
    return nodes, max(nodes.count(n) for n in set(nodes))


def _network(comm: Communicator, nodes: list[int], sizes: Sizes) -> dict:
    same = [r for r in range(1, comm.size) if nodes[r] == nodes[0]]
    other = [r for r in range(1, comm.size) if nodes[r] != nodes[0]]
    world_collectives = measure_collectives(comm, sizes)
    network = {"overlap": overlap_share(comm, sizes)}
    if other:
        network["inter_node"] = link_entry(ping_pong(comm, other[0], sizes), world_collectives)
    if same:
        node_comm = comm.split(nodes[comm.rank])
        # Across nodes, within each node (all nodes at once, as a run's groups would be).
        intra_collectives = measure_collectives(node_comm, sizes) if other else world_collectives
        node_comm.free()
        network["intra_node"] = link_entry(ping_pong(comm, same[0], sizes), intra_collectives)
    else:
        network["intra_node"] = {**network["inter_node"]}
        network["intra_node"]["note"] = "one rank per node: intra-node link not measured, copied"
    return network


def calibrate(comm: Communicator, spec: ModelSpec, sizes: Sizes = Sizes()) -> dict | None:
    """Measure and return the profile dict on rank 0 (None on the other ranks).

    With one rank the ``network`` part is null: only compute was measured. Collective
    fits over the world are attached to the inter-node link when the run spans nodes, and
    fits within each node (measured on every node at once) to the intra-node link.
    """
    nodes, ranks_per_node = _node_layout(comm)
    cores = os.cpu_count() or 1
    compute = measure_compute(comm, spec, sizes, max(1.0, ranks_per_node / cores))
    network = _network(comm, nodes, sizes) if comm.size > 1 else None
    if not comm.is_root:
        return None
    return {"schema": SCHEMA, "source": "measured",
            "host": socket.gethostname(), "platform": platform.platform(),
            "measured_ranks": comm.size, "nodes": len(set(nodes)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "cores_per_node": cores, "ranks_per_node": ranks_per_node,
            "compute": compute, "network": network,
            "note": None if network else "measured on one rank: no network part"}
