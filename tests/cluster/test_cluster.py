"""The MPI tests across 2 emulated nodes x 2 ranks over 1 Gbit/s links, and a rank killed on
the other node. Run by ``make test-cluster`` (needs root); each job runs under a timeout."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import cluster as emulated
from launch import ENV, mpinn, rank_pid, wait_for

from mpinn.train.checkpoint import NAME, list_checkpoints

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
SUBSET = ["tests/mpi/test_data_parallel.py::test_n_ranks_equal_one_rank_after_50_steps",
          "tests/mpi/test_data_parallel.py::test_bucketed_overlapped_reduction_equals_one_flat_allreduce",
          "tests/mpi/test_zero.py::test_zero_equals_data_parallel_and_shards_optimizer_state",
          "tests/mpi/test_model_parallel.py::test_pipeline_over_every_rank_equals_one_rank",
          "tests/mpi/test_model_parallel.py::test_two_by_two_grid_equals_one_rank",
          "tests/mpi/test_deterministic.py::test_parameters_and_logs_bitwise_equal_to_one_rank_after_100_steps"]
PLACEMENT = """
import json, socket
from mpi4py import MPI
world = MPI.COMM_WORLD
node = world.Split_type(MPI.COMM_TYPE_SHARED)
placed = world.gather([socket.gethostname(), node.Get_size()])
if world.rank == 0:
    print(json.dumps(placed), flush=True)
"""
RUN = ("train", "--hidden", "256,256", "--batch-size", "16", "--seed", "3", "--epochs", "6")


def namespaces():
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


def past_first_epoch(directory):
    """Whether a checkpoint after step 100 (the first epoch has 85 steps) is written."""
    return any(int(NAME.match(p.name)[1]) >= 100 for p in list_checkpoints(directory))


def across(cluster, command, timeout=240):
    """Run ``command`` on both nodes, 2 ranks each; returns the CompletedProcess."""
    return subprocess.run(cluster.mpiexec(MPIEXEC, 2, [str(c) for c in command]), capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=ROOT)


def test_link_rates_take_tc_syntax():
    assert emulated.bits_per_s("0.25gbit") == 2.5e8 and emulated.bits_per_s("500mbit") == 5e8
    with pytest.raises(ValueError, match="must end in gbit, mbit, kbit or bit"):
        emulated.bits_per_s("1gbps")


def test_stop_deletes_every_namespace_start_recorded(cluster):
    small = emulated.start(1, None, "mps")
    assert {small.hub, *small.nodes} <= namespaces()
    assert emulated.stop("mps") == [*small.nodes, small.hub]
    assert not {small.hub, *small.nodes} & namespaces() and emulated.load("mps") is None
    assert {cluster.hub, *cluster.nodes} <= namespaces()  # another cluster's are left alone


def test_the_root_namespace_gets_no_address_and_no_route(cluster):
    shown = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    prefix = cluster.subnet.rsplit(".", 1)[0] + "."
    assert prefix not in shown and prefix not in routes
    assert not {"br0", "veth0", "veth1"} & set(os.listdir("/sys/class/net"))


def test_ranks_are_placed_two_per_node_with_the_nodes_hostnames(cluster):
    run = across(cluster, [sys.executable, "-c", PLACEMENT], timeout=60)
    assert run.returncode == 0, run.stderr
    placed = json.loads(run.stdout.strip().splitlines()[-1])
    assert placed == [[node, 2] for node in cluster.nodes for _ in range(2)]


def test_the_mpi_tests_pass_across_the_nodes_and_cross_the_link(cluster):
    before = cluster.link_bytes()
    run = across(cluster, [sys.executable, "-m", "pytest", *SUBSET, "--with-mpi", "-q",
                           "-p", "no:cacheprovider"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "error" not in summary, summary
    sent = {node: count - before[node] for node, count in cluster.link_bytes().items()}
    assert all(count > 1e5 for count in sent.values()), sent  # traffic went between the nodes


def test_calibrate_measures_the_links_within_and_between_the_nodes(cluster, tmp_path):
    path = tmp_path / "profile.json"
    run = across(cluster, [sys.executable, "-m", "mpinn", "calibrate", "--quick", "--model", "32,64,10",
                           "--output", path], timeout=120)
    assert run.returncode == 0, run.stderr
    profile = json.loads(path.read_text())
    assert profile["nodes"] == 2 and profile["ranks_per_node"] == 2
    network = profile["network"]
    assert network["intra_node"]["collectives"]["allreduce"]["ranks"] == 2   # within a node
    assert network["inter_node"]["collectives"]["allreduce"]["ranks"] == 4   # the whole job
    # The ping-pong between the nodes crossed the network: TCP over the shaped veth pair is
    # several times slower than shared memory within a node. (Not compared with the link
    # rate: a 64 KiB message fits in the token bucket's 1 ms burst and can pass at host speed.)
    crossing = {p["bytes"]: p["seconds"] for p in network["inter_node"]["ping_pong"]}
    within = {p["bytes"]: p["seconds"] for p in network["intra_node"]["ping_pong"]}
    assert crossing[65536] > 3 * within[65536], (crossing, within)


def test_a_rank_killed_on_the_other_node_ends_the_job_and_resume_finishes(cluster, tmp_path):
    checkpoints = tmp_path / "ck"
    command = cluster.mpiexec(MPIEXEC, 2, [sys.executable, "-m", "mpinn", *RUN, "--checkpoint-dir",
                                           str(checkpoints), "--checkpoint-every", "25"])
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=ENV, cwd=ROOT)
    try:
        victim = rank_pid(job.pid, 3)
        node = subprocess.run(["ip", "netns", "identify", str(victim)], capture_output=True,
                              text=True).stdout.strip()
        assert node == cluster.nodes[1]
        wait_for(lambda: past_first_epoch(checkpoints), what="a checkpoint after the first epoch")
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode != 0 and time.monotonic() - killed_at < 60
    assert list_checkpoints(checkpoints)[0].name != "ckpt-00000510.npz"  # cut short
    final = tmp_path / "final.npz"
    resumed = across(cluster, [sys.executable, "-m", "mpinn", *RUN, "--checkpoint-dir", checkpoints,
                               "--resume", "auto", "--save", final])
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 1/6" not in resumed.stdout and "epoch 6/6" in resumed.stdout  # it resumed
    reference = tmp_path / "reference.npz"
    assert mpinn(*RUN, "--save", reference, ranks=1).returncode == 0
    with np.load(final) as got, np.load(reference) as want:
        np.testing.assert_allclose(got["params"], want["params"], rtol=1e-4, atol=1e-5)
