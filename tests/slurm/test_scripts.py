"""Every script in slurm/ submitted to a real (local, one-node) Slurm with tiny settings."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from slurmjobs import SLURM_SCRIPTS, run_job, submit, train_flags, wait_for

TINY = "--epochs 1 --hidden 16"
TESTED = {"train-data-parallel.sbatch", "scaling-benchmark.sbatch", "train-pipeline.sbatch",
          "train-hybrid.sbatch", "sweep.sbatch", "train-resumable.sbatch"}


def test_every_script_is_tested_and_parses():
    scripts = {p.name for p in SLURM_SCRIPTS.glob("*.sbatch")}
    assert scripts == TESTED, f"untested: {scripts - TESTED}, missing: {TESTED - scripts}"
    for name in scripts:
        subprocess.run(["bash", "-n", str(SLURM_SCRIPTS / name)], check=True, timeout=30)


def require_flags(*flags: str) -> None:
    missing = [f for f in flags if f not in train_flags()]
    if missing:
        pytest.skip(f"mpinn train has no {', '.join(missing)} yet")


def epochs(metrics_path) -> list[dict]:
    lines = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    return [r for r in lines if r["event"] == "epoch"]


def assert_completed(job) -> None:
    assert (job.state, job.exit_code) == ("COMPLETED", 0), f"job {job.id}: {job.state}\n{job.output}"


def assert_whole_model_saved(path) -> None:
    """A model-parallel run saves the whole model: one process can evaluate it."""
    out = subprocess.run([sys.executable, "-m", "mpinn", "evaluate", "--model", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "test accuracy" in out.stdout, out.stderr


@pytest.mark.parametrize("launch, ranks, threads", [("srun --mpi=pmi2", 2, 2), ("mpiexec", 4, 1)])
def test_data_parallel(slurm, tmp_path, launch, ranks, threads):
    job = run_job("train-data-parallel.sbatch", tmp_path, "-N1", f"-n{ranks}", f"--ntasks-per-node={ranks}",
                  f"--cpus-per-task={threads}", env={"MPINN_LAUNCH": launch, "MPINN_ARGS": TINY})
    assert_completed(job)
    assert f"{threads} thread(s) per rank" in job.output
    assert f"data parallel over {ranks} rank(s)" in job.output
    out = tmp_path / "runs" / f"mpinn-data-{job.id}"   # the script's default output folder
    assert len(epochs(out / "metrics.jsonl")) == 1
    assert np.load(out / "model.npz")["params"].size > 0


def test_scaling_benchmark(slurm, tmp_path):
    job = run_job("scaling-benchmark.sbatch", tmp_path, "-N1", "-n2",
                  env={"MPINN_OUT": str(tmp_path / "scaling"), "SCALING_BATCH": "64",
                       "MPINN_ARGS": TINY})
    assert_completed(job)
    runs = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    assert [r["ranks"] for r in runs] == [1, 2]   # powers of two up to the 2 tasks
    for run in runs:
        assert json.loads((tmp_path / "scaling" / f"ranks-{run['ranks']}.json").read_text())["ranks"] == run["ranks"]
        assert run["samples_per_s"] > 0 and run["global_batch"] == 64
    assert runs[0]["speedup"] == 1.0
    assert "| 2 | 1 | 64 |" in job.output and "| 2 | 1 | 64 |" in (tmp_path / "scaling" / "scaling.md").read_text()


def test_pipeline(slurm, tmp_path):
    require_flags("--stages", "--micro-batches")
    job = run_job("train-pipeline.sbatch", tmp_path, "-N1", "-n2",
                  env={"MPINN_OUT": str(tmp_path / "out"), "PIPELINE_MICRO_BATCHES": "2",
                       "MPINN_ARGS": "--epochs 1 --hidden 16,16"})
    assert_completed(job)
    assert "2 pipeline stages" in job.output
    assert len(epochs(tmp_path / "out" / "metrics.jsonl")) == 1
    assert_whole_model_saved(tmp_path / "out" / "model.npz")


def test_hybrid_grid(slurm, tmp_path):
    require_flags("--grid", "--micro-batches")
    job = run_job("train-hybrid.sbatch", tmp_path, "-N1", "-n4", "--ntasks-per-node=4",
                  env={"MPINN_OUT": str(tmp_path / "out"), "PIPELINE_MICRO_BATCHES": "2",
                       "MPINN_ARGS": "--epochs 1 --hidden 16,16"})
    assert_completed(job)
    assert "grid data=2 x pipeline=2" in job.output
    assert len(epochs(tmp_path / "out" / "metrics.jsonl")) == 1
    assert_whole_model_saved(tmp_path / "out" / "model.npz")


def test_hybrid_grid_that_does_not_divide_the_ranks_fails_clearly(slurm, tmp_path):
    job = run_job("train-hybrid.sbatch", tmp_path, "-N1", "-n3", "--ntasks-per-node=3",
                  env={"GRID_PIPELINE": "2"})
    assert (job.state, job.exit_code) == ("FAILED", 2)
    assert "3 ranks cannot form a grid with 2 pipeline stages" in job.output


def test_sweep_job_array(slurm, tmp_path):
    env = {"MPINN_OUT": str(tmp_path / "sweep"), "SWEEP_LR": "0.01 0.001", "SWEEP_HIDDEN": "16",
           "MPINN_ARGS": "--epochs 1"}
    tasks = wait_for(submit("sweep.sbatch", tmp_path, "--array=0-1", "-n2", env=env), timeout=120)
    assert sorted((t["JobState"], t["ExitCode"]) for t in tasks) == [("COMPLETED", "0:0")] * 2
    results = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert sorted((r["point"], r["lr"], r["hidden"]) for r in results) == [(0, 0.01, "16"), (1, 0.001, "16")]
    assert [r["val_loss"] for r in results] == sorted(r["val_loss"] for r in results)
    for point in (0, 1):
        assert (tmp_path / "sweep" / f"point-{point}" / "model.npz").exists()
    assert len((tmp_path / "sweep" / "results.md").read_text().splitlines()) == 4


def test_sweep_index_outside_the_grid_fails_clearly(slurm, tmp_path):
    env = {"SWEEP_LR": "0.01 0.001", "SWEEP_HIDDEN": "16"}
    [task] = wait_for(submit("sweep.sbatch", tmp_path, "--array=2", "-n1", env=env), timeout=60)
    assert (task["JobState"], task["ExitCode"]) == ("FAILED", "2:0")
    assert "submit with --array=0-1" in Path(task["StdOut"]).read_text()


def test_scaling_benchmark_weak(slurm, tmp_path):
    job = run_job("scaling-benchmark.sbatch", tmp_path, "-N1", "-n2",
                  env={"MPINN_OUT": str(tmp_path / "scaling"), "SCALING": "weak", "SCALING_RANKS": "2",
                       "SCALING_BATCH": "32", "MPINN_ARGS": TINY})
    assert_completed(job)
    [run] = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    assert (run["ranks"], run["scaling"], run["global_batch"]) == (2, "weak", 64)   # 32 per rank
