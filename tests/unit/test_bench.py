"""bench/common: every benchmark process runs on the machine's native BLAS kernel, one thread,
and says so in its results (tests themselves keep whatever kernel the machine forces)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from launch import mpiexec

BENCH = Path(__file__).resolve().parents[2] / "bench"
PROBE = f"""
import json, os, sys
sys.path.insert(0, {str(BENCH)!r})
import common
print(json.dumps({{"env": {{k: os.environ.get(k) for k in common.FORCED_BLAS}},
                  "removed": common.REMOVED, "blas": common.blas_info()}}))
"""


def probe(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_benchmark_restarts_without_the_forced_kernel_and_records_what_it_removed():
    plain = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    native = probe(plain)
    forced = probe({**plain, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "2097152",
                    "OPENBLAS_NUM_THREADS": "2"})
    assert forced["env"] == {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}
    assert forced["removed"] == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "2097152"}
    assert forced["blas"]["kernel"] == native["blas"]["kernel"]
    assert forced["blas"]["threads"] == native["blas"]["threads"] == 1
    assert native["removed"] == {}


def test_results_go_where_asked_with_the_machine_described(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import common; "
            f"print(common.write_json('probe', {{'figure': 1}}, {str(tmp_path / 'out')!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
    result = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert result["figure"] == 1
    machine = result["machine"]
    assert machine["blas"]["threads"] == 1 and machine["blas"]["kernel"]
    assert machine["versions"]["numpy"] and machine["versions"]["mpinn"]
    assert machine["mpi"] and len(machine["load_average_at_start"]) == 3


def run_worker(script: str, *args: str, ranks: int = 2) -> dict:
    """A benchmark worker on a tiny problem under mpiexec: its one JSON line from rank 0."""
    out = mpiexec(ranks, sys.executable, BENCH / script, *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_model_parallel_worker_measures_every_table_on_a_tiny_model():
    result = run_worker("model_parallel_worker.py", "--steps", "1", "--batch", "64",
                        "--memory-batch", "64", "--width", "16", "--layers", "2")
    assert {"parameter_bytes", "activation_memory", "bubble", "step_time"} <= result.keys()
    assert all(row["step_s"] > 0 for row in result["step_time"]), result["step_time"]


def test_the_sharded_async_worker_measures_memory_and_training():
    memory = run_worker("sharded_async_worker.py", "memory", "--strategy", "zero", "--steps", "2")
    whole_state = 2 * 4 * memory["params"]  # Adam's two float32 moments
    assert [rank["optimizer_state"] for rank in memory["per_rank"]] == [whole_state // 2] * 2, memory
    assert memory["step_s"] > 0, memory
    training = run_worker("sharded_async_worker.py", "train", "--epochs", "1")
    assert training["final_accuracy"] > 0.5, training


def test_the_heartbeat_worker_counts_calls_and_times_a_record_update():
    result = run_worker("heartbeat_worker.py", "1")
    for row in result["results"]:
        assert row["calls_per_step"] > 0 and 0 < row["record_update_s"] < 1e-3, row
