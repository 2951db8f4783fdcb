"""Submitting slurm/*.sbatch to the local Slurm and waiting for the result.

Jobs are submitted with ``sbatch --parsable`` and polled every half second under a deadline
(``sbatch --wait`` polls up to every 10 s, which would triple the suite's time)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM_SCRIPTS = ROOT / "slurm"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@dataclass
class Job:
    id: str
    state: str
    exit_code: int
    output: str
    restarts: int


def job_fields(job_id: str) -> list[dict[str, str]]:
    """``scontrol show job`` as one dict per job (several for an array)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines()]


def wait_for(job_id: str, timeout: float) -> list[dict[str, str]]:
    """Poll until every job (or array task) of ``job_id`` is in a final state."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = job_fields(job_id)
        if jobs and all(j["JobState"] in FINAL_STATES for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30)
            pytest.fail(f"job {job_id} not finished after {timeout:.0f} s: "
                        f"{[(j['JobId'], j['JobState']) for j in jobs]}")
        time.sleep(0.5)


def submit(script: str, tmp_path: Path, *sbatch_args: str, env: dict | None = None) -> str:
    """Submit slurm/<script> from ``tmp_path`` (its SLURM_SUBMIT_DIR); return the job id."""
    environment = {**os.environ, "MPINN_VENV": sys.prefix, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run(["sbatch", "--parsable", "--output", str(tmp_path / "%x-%j.out"),
                          *sbatch_args, str(SLURM_SCRIPTS / script)], cwd=tmp_path,
                         env=environment, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"sbatch {script} failed: {out.stderr}"
    return out.stdout.strip().split(";")[0]


def run_job(script: str, tmp_path: Path, *sbatch_args: str, env: dict | None = None,
            timeout: float = 120) -> Job:
    """Submit, wait, and return the job's final state, exit status and output log."""
    job_id = submit(script, tmp_path, *sbatch_args, env=env)
    info = wait_for(job_id, timeout)[0]
    log = Path(info["StdOut"])
    return Job(job_id, info["JobState"], int(info["ExitCode"].split(":")[0]),
               log.read_text() if log.exists() else "", int(info["Restarts"]))


def train_flags() -> str:
    """``mpinn train --help``: tests of features not landed yet skip on a missing flag."""
    return subprocess.run([sys.executable, "-m", "mpinn", "train", "--help"], capture_output=True,
                          text=True, timeout=60, check=True).stdout


def wait_until(condition, timeout: float, what: str):
    """Poll ``condition()`` every 0.2 s until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {timeout:.0f} s")
        time.sleep(0.2)
    return result


def start_requeued(job: dict[str, str]) -> None:
    """Start a requeued job that Slurm holds back (~2 minutes before it is eligible again) in
    3 s: not in the second of the requeue, whose revoked credential slurmd would still hold
    against it ("Killing non-startable batch job: Job credential revoked")."""
    if job["JobState"] == "PENDING":
        subprocess.run(["scontrol", "update", f"JobId={job['JobId']}", "StartTime=now+3"],
                       check=True, timeout=30)
