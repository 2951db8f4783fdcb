"""The machine profile the planner reads: JSON written by ``mpinn calibrate`` or by hand.

Schema (``"schema": "mpinn-profile/1"``; times in seconds, sizes in bytes)::

    {
      "schema": "mpinn-profile/1",
      "source": "measured" | "hand-written",       # free text
      "cores_per_node": 48,                         # physical cores a node offers ranks
      "ranks_per_node": 48,                         # how runs place ranks (default cores_per_node)
      "compute": {                                  # ONE rank alone on one core
        "gemm_flops_per_s": 5.0e10,                 # float32 matmul throughput
        "gemm_overhead_s": 2.0e-6,                  # fixed cost per matmul call
        "gemm_bytes_per_s": 2.0e10,                 # optional: operand traffic (packing), which
                                                    # makes matmuls with few rows slower per flop
        "memory_bytes_per_s": 1.0e10,               # streaming element-wise traffic
        "gemm_points": [{"m": 8, "k": 1024, "n": 1024, "seconds": 4.4e-4}, ...],
                                                    # optional: the model's own matmuls as
                                                    # calibrated, which correct the formula
                                                    # shape by shape (see ComputeCost.gemm)
        "measured_with_oversubscription": 1.0       # ranks per core while they were measured
      },
      "network": {                                  # absent or null: measured on one rank
        "overlap": 0.0,                             # share of non-blocking communication that
                                                    # progresses while the rank computes (0..1)
        "intra_node": LINK,
        "inter_node": LINK                          # optional: defaults to intra_node
      },
      "measurements": {...}                         # optional raw calibration points (not read)
    }

    LINK = {"latency_s": 2e-6, "bandwidth_bytes_per_s": 1.25e10,
            "collectives": {"allreduce": {"alpha_s": ..., "beta_s_per_byte": ...,
                                          "ranks": 4, "points": [{"bytes": ..., "seconds": ...}]},
                            "reduce_scatter": {...}, "allgather": {...}}}   # optional

``latency_s`` and ``bandwidth_bytes_per_s`` describe a point-to-point message (ping-pong);
``collectives`` holds the per-step alpha and beta that reproduce the measured collective on
that link through the formulas of :mod:`mpinn.plan.costs` (they fold in reduction work and
the MPI library's own choices); its measured points, if given, correct the formula size by
size. A collective without an entry uses the point-to-point pair.
Compute rates are per core: when more ranks than cores share a node, the planner divides
them by the oversubscription ratio (see :func:`compute_slowdown`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpinn.errors import ConfigError

SCHEMA = "mpinn-profile/1"
COLLECTIVES = ("allreduce", "reduce_scatter", "allgather")


@dataclass(frozen=True)
class AlphaBeta:
    """Per-step latency ``alpha_s`` and per-byte time ``beta_s_per_byte`` of one algorithm step.

    A calibrated collective also keeps its measured (bytes, seconds) points at
    ``measured_ranks``: what the alpha-beta line misses at a given size (caches, protocol
    switches) is carried over to other rank counts as a ratio (see mpinn.plan.costs).
    """

    alpha_s: float
    beta_s_per_byte: float
    measured: tuple[tuple[float, float], ...] = ()
    measured_ranks: int = 0


@dataclass(frozen=True)
class Link:
    """A class of connection between two ranks (same node, or different nodes)."""

    latency_s: float
    bandwidth_bytes_per_s: float
    collectives: dict[str, AlphaBeta] = field(default_factory=dict)
    ping_pong: tuple[tuple[float, float], ...] = ()  # measured one-way (bytes, seconds)

    @property
    def point_to_point(self) -> AlphaBeta:
        return AlphaBeta(self.latency_s, 1.0 / self.bandwidth_bytes_per_s)

    @property
    def message(self) -> AlphaBeta:
        """One message between two ranks: the alpha-beta line, corrected size by size by the
        ping-pong points where calibrated (a shaped link's burst makes mid-size messages
        faster than its rate, and a fit through all sizes misses the large ones)."""
        return AlphaBeta(self.latency_s, 1.0 / self.bandwidth_bytes_per_s, self.ping_pong,
                         2 if self.ping_pong else 0)

    @property
    def sustained_bytes_per_s(self) -> float:
        """What a stream of messages gets: the rate of the largest ping-pong message where
        calibrated (a shaped link's token bucket speeds up only a message after a pause)."""
        if not self.ping_pong:
            return self.bandwidth_bytes_per_s
        nbytes, seconds = max(self.ping_pong)
        return nbytes / seconds if seconds > 0 else self.bandwidth_bytes_per_s

    def step_cost(self, collective: str) -> AlphaBeta:
        """Alpha-beta of one step of ``collective``: measured if calibrated, else point-to-point."""
        return self.collectives.get(collective, self.point_to_point)


@dataclass(frozen=True)
class Network:
    intra_node: Link
    inter_node: Link
    overlap: float = 0.0


@dataclass(frozen=True)
class Compute:
    """Per-core compute rates; ``gemm_points`` are measured (m, k, n, seconds) matmuls, timed
    with ``points_oversubscription`` ranks per core (see :meth:`ComputeCost.gemm`)."""

    gemm_flops_per_s: float
    gemm_overhead_s: float
    memory_bytes_per_s: float
    gemm_bytes_per_s: float = math.inf
    gemm_points: tuple[tuple[int, int, int, float], ...] = ()
    points_oversubscription: float = 1.0


@dataclass(frozen=True)
class Profile:
    cores_per_node: int
    ranks_per_node: int
    compute: Compute
    network: Network | None
    source: str = "hand-written"

    def link(self, spans_nodes: bool) -> Link:
        """The link a group of ranks communicates over; needs a network part."""
        if self.network is None:
            raise ConfigError("this profile has no network part (it was calibrated on one rank); "
                              "calibrate under mpiexec -n 2 or more, or add a \"network\" section")
        return self.network.inter_node if spans_nodes else self.network.intra_node


def compute_slowdown(profile: Profile, ranks_on_node: int) -> float:
    """How much slower each rank computes when ``ranks_on_node`` ranks share a node's cores."""
    return max(1.0, ranks_on_node / profile.cores_per_node)


def _number(section: dict, key: str, where: str, positive: bool = True) -> float:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"profile: {where}.{key} must be a number, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"profile: {where}.{key} must be positive, got {value!r}")
    return float(value)


def _section(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"profile: {where}{key} must be an object, got {value!r}")
    return value


def _link(data: dict, where: str) -> Link:
    collectives = {}
    for name, step in (data.get("collectives") or {}).items():
        if name not in COLLECTIVES:
            raise ConfigError(f"profile: {where}.collectives has unknown collective {name!r}; "
                              f"known: {', '.join(COLLECTIVES)}")
        at = f"{where}.collectives.{name}"
        points = tuple((_number(point, "bytes", at + ".points"), _number(point, "seconds", at + ".points"))
                       for point in step.get("points", ()))
        ranks = int(_number(step, "ranks", at)) if points else 0
        collectives[name] = AlphaBeta(_number(step, "alpha_s", at, positive=False),
                                      _number(step, "beta_s_per_byte", at, positive=False),
                                      points if ranks > 1 else (), ranks)
    ping_pong = tuple((_number(point, "bytes", where + ".ping_pong"),
                       _number(point, "seconds", where + ".ping_pong"))
                      for point in data.get("ping_pong") or ())
    return Link(_number(data, "latency_s", where, positive=False),
                _number(data, "bandwidth_bytes_per_s", where), collectives, ping_pong)


def _network(data: dict | None) -> Network | None:
    if not data:
        return None
    intra = _link(_section(data, "intra_node", "network."), "network.intra_node")
    inter = _link(data["inter_node"], "network.inter_node") if data.get("inter_node") else intra
    overlap = _number(data, "overlap", "network", positive=False) if "overlap" in data else 0.0
    if not 0.0 <= overlap <= 1.0:
        raise ConfigError(f"profile: network.overlap must lie in [0, 1], got {overlap}")
    return Network(intra, inter, overlap)


def _gemm_point(point: Any) -> tuple[int, int, int, float]:
    where = "compute.gemm_points"
    if not isinstance(point, dict):
        raise ConfigError(f"profile: {where} must hold objects with m, k, n and seconds, got {point!r}")
    m, k, n = (int(_number(point, key, where)) for key in "mkn")
    return m, k, n, _number(point, "seconds", where)


def _compute(compute: dict) -> Compute:
    optional = {key: _number(compute, key, "compute") for key in ("gemm_bytes_per_s", "measured_with_oversubscription")
                if key in compute}
    return Compute(_number(compute, "gemm_flops_per_s", "compute"),
                   _number(compute, "gemm_overhead_s", "compute", positive=False),
                   _number(compute, "memory_bytes_per_s", "compute"),
                   optional.get("gemm_bytes_per_s", math.inf),
                   tuple(_gemm_point(point) for point in compute.get("gemm_points") or ()),
                   optional.get("measured_with_oversubscription", 1.0))


def profile_from_dict(data: Any) -> Profile:
    """Validate a parsed profile; every problem is a ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError("profile: the file must hold a JSON object")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise ConfigError(f"profile: schema {data.get('schema')!r} is not {SCHEMA!r}")
    compute = _section(data, "compute", "")
    cores = int(_number(data, "cores_per_node", "profile"))
    ranks_per_node = int(_number(data, "ranks_per_node", "profile")) if "ranks_per_node" in data else cores
    return Profile(cores, ranks_per_node, _compute(compute),
                   _network(data.get("network")), str(data.get("source", "hand-written")))


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read profile {path}: {exc.strerror or exc}; write one with "
                          f"`mpiexec -n 2 mpinn calibrate --output {path}` or by hand") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid JSON: {exc}") from None
    return profile_from_dict(data)
