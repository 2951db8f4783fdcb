"""A cluster in a box: K emulated nodes in network namespaces, joined by shaped links.

    python tests/cluster/cluster.py start --nodes 2 --rate 1gbit [--name mpc]
    python tests/cluster/cluster.py stop [--name mpc]

Every part lives in namespaces this module creates: a hub namespace ``NAME-hub`` holds the
bridge ``br0`` (address .1, where ``mpiexec`` runs with ``-iface br0``) and one veth end per
node; node namespace ``NAME-nodeI`` holds the other end as ``eth0`` (address .(10+I)). Both
ends are shaped with ``tc qdisc ... tbf rate R``, so each node's link carries R each way. The
root namespace gets no address and no route; the subnet is a /24 that no address or route
of the machine overlaps. ``start`` records every namespace it made in a state file before
making the next; ``stop`` deletes exactly those (deleting a namespace deletes its links).

MPICH's hydra starts its proxies through ``netns-launcher.sh`` (``mpiexec -launcher ssh
-launcher-exec``), which runs them inside the node's namespace under the node's hostname:
mpinn runs unchanged, as under ``mpiexec -hosts`` on a real cluster. Ranks on one node talk
through shared memory, ranks on different nodes over TCP (``UCX_TLS=tcp,self``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "netns-launcher.sh"
BRIDGE = "br0"
BURST_FLOOR = 16384  # bytes: above one full-size frame, as tbf requires
CANDIDATE_SUBNETS = [f"10.{b}.{c}.0/24" for b in (213, 214, 215) for c in (7, 8, 9)]


@dataclass(frozen=True)
class Cluster:
    """A started cluster: its names, subnet and link rate (what ``stop`` and launches need)."""

    name: str
    hub: str
    nodes: tuple[str, ...]
    subnet: str
    rate: str | None

    def mpiexec(self, mpiexec: str, ranks_per_node: int, command: list[str],
                env: dict[str, str] | None = None) -> list[str]:
        """The command line that runs ``command`` on every node, ``ranks_per_node`` each,
        launched from the hub namespace (rank r on node r // ranks_per_node)."""
        hosts = ",".join(f"{node}:{ranks_per_node}" for node in self.nodes)
        genv = [arg for key, value in {"UCX_TLS": "tcp,self", **(env or {})}.items()
                for arg in ("-genv", key, value)]
        return ["ip", "netns", "exec", self.hub, mpiexec, "-launcher", "ssh", "-launcher-exec",
                str(LAUNCHER), "-iface", BRIDGE, "-hosts", hosts,
                "-n", str(ranks_per_node * len(self.nodes)), *genv, *command]

    def link_bytes(self) -> dict[str, int]:
        """Bytes each node has sent into its link (its eth0's transmit counter)."""
        return {node: int(_ip_out(node, "cat", "/sys/class/net/eth0/statistics/tx_bytes"))
                for node in self.nodes}


def why_unavailable() -> str | None:
    """Why namespaces cannot be made here (None if they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    missing = [tool for tool in ("ip", "tc", "unshare") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not found (iproute2 and util-linux provide them)"
    return None


def state_path(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"mpinn-cluster-{name}.json"


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


def _ip_out(namespace: str, *command: str) -> str:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], check=True,
                          capture_output=True, text=True, timeout=30).stdout


def free_subnet() -> str:
    """The first candidate /24 that overlaps no address or route in the root namespace."""
    used = []
    for command in (["ip", "-o", "-4", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
        for word in out.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    for candidate in map(ipaddress.ip_network, CANDIDATE_SUBNETS):
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return str(candidate)
    raise RuntimeError(f"every candidate subnet is in use here: {', '.join(CANDIDATE_SUBNETS)}")


def _shape(namespace: str, device: str, rate: str) -> None:
    """Token bucket at ``rate`` whose bucket holds 1 ms of traffic: a larger one would let
    every message below its size through at the host's speed after an idle moment."""
    _run("ip", "netns", "exec", namespace, "tc", "qdisc", "replace", "dev", device, "root",
         "tbf", "rate", rate, "burst", str(max(BURST_FLOOR, int(bits_per_s(rate) / 8 / 1000))),
         "latency", "100ms")


def bits_per_s(rate: str) -> float:
    """tc's rate syntax ("0.25gbit", "500mbit", "1000kbit") in bits per second."""
    for suffix, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)):
        if rate.endswith(suffix):
            return float(rate[:-len(suffix)]) * scale
    raise ValueError(f"link rate {rate!r} must end in gbit, mbit, kbit or bit (tc syntax)")


def _record(path: Path, cluster: Cluster) -> None:
    path.write_text(json.dumps(asdict(cluster)) + "\n")


def start(nodes: int, rate: str | None, name: str = "mpc") -> Cluster:
    """Create the hub and ``nodes`` node namespaces; ``rate`` (tc syntax, e.g. "1gbit") shapes
    each node's link both ways, None leaves it unshaped. Stops a cluster of that name first."""
    reason = why_unavailable()
    if reason:
        raise RuntimeError(reason)
    if rate:
        bits_per_s(rate)
    stop(name)
    subnet = ipaddress.ip_network(free_subnet())
    hosts = list(subnet.hosts())
    hub, path = f"{name}-hub", state_path(name)
    cluster = Cluster(name, hub, (), str(subnet), rate)
    _record(path, cluster)
    _run("ip", "netns", "add", hub)
    for command in (["link", "add", BRIDGE, "type", "bridge"],
                    ["addr", "add", f"{hosts[0]}/{subnet.prefixlen}", "dev", BRIDGE],
                    ["link", "set", BRIDGE, "up"], ["link", "set", "lo", "up"]):
        _run("ip", "-n", hub, *command)
    for index in range(nodes):
        node = f"{name}-node{index}"
        cluster = Cluster(name, hub, cluster.nodes + (node,), str(subnet), rate)
        _record(path, cluster)
        _run("ip", "netns", "add", node)
        port = f"veth{index}"
        _run("ip", "-n", hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node)
        _run("ip", "-n", hub, "link", "set", port, "master", BRIDGE, "up")
        _run("ip", "-n", node, "addr", "add", f"{hosts[10 + index]}/{subnet.prefixlen}", "dev", "eth0")
        _run("ip", "-n", node, "link", "set", "eth0", "up")
        _run("ip", "-n", node, "link", "set", "lo", "up")
        if rate:
            _shape(node, "eth0", rate)
            _shape(hub, port, rate)
    return cluster


def load(name: str = "mpc") -> Cluster | None:
    """The cluster recorded under ``name``, or None."""
    try:
        data = json.loads(state_path(name).read_text())
    except (OSError, ValueError):
        return None
    return Cluster(data["name"], data["hub"], tuple(data["nodes"]), data["subnet"], data["rate"])


def stop(name: str = "mpc") -> list[str]:
    """Delete the namespaces recorded under ``name`` (and with them their links and bridge);
    returns the names deleted. Nothing is deleted that this module did not record."""
    cluster = load(name)
    if cluster is None:
        return []
    existing = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                  timeout=30).stdout.split())
    deleted = []
    for namespace in (*cluster.nodes, cluster.hub):
        if namespace in existing:
            _run("ip", "netns", "delete", namespace)
            deleted.append(namespace)
    state_path(name).unlink()
    return deleted


def main() -> None:
    parser = argparse.ArgumentParser(description="start or stop an emulated cluster")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rate", help="link rate in tc syntax (e.g. 1gbit); default unshaped")
    parser.add_argument("--name", default="mpc", help="prefix of the namespace names")
    args = parser.parse_args()
    if args.action == "start":
        cluster = start(args.nodes, args.rate, args.name)
        print(f"started {', '.join(cluster.nodes)} on {cluster.subnet} (hub {cluster.hub}, "
              f"link {cluster.rate or 'unshaped'})")
    else:
        deleted = stop(args.name)
        print(f"deleted {', '.join(deleted)}" if deleted else "nothing recorded to delete")


if __name__ == "__main__":
    main()
