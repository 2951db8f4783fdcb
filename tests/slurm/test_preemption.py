"""The preemption round trip on the real scheduler: slurm/train-resumable.sbatch is sent
USR1 (as Slurm does before the time limit), checkpoints, exits 75, requeues itself, resumes
from the checkpoint and ends with the same parameters as an uninterrupted run."""

import subprocess

import numpy as np
from slurmjobs import job_fields, run_job, start_requeued, submit, wait_for, wait_until
from test_scripts import assert_completed, epochs, require_flags

SCRIPT = "train-resumable.sbatch"
# 100 short epochs (a few seconds), so that the signal lands mid-run; checkpoints every 20 steps.
SETTINGS = {"MPINN_ARGS": "--epochs 100 --hidden 16 --batch-size 64", "CHECKPOINT_EVERY": "20"}


def still_running(job_id: str) -> bool:
    """False while the job has not started; a failure if it ended before the signal."""
    [job] = job_fields(job_id)
    assert job["JobState"] in ("PENDING", "RUNNING"), f"job ended before the signal: {job}"
    return job["JobState"] == "RUNNING"


def test_preempted_job_checkpoints_requeues_and_resumes(slurm, tmp_path):
    require_flags("--checkpoint-dir", "--resume")
    preempted, reference = tmp_path / "preempted", tmp_path / "reference"
    job_id = submit(SCRIPT, tmp_path, "-N1", "-n2", env={**SETTINGS, "MPINN_OUT": str(preempted)})
    # Signal once the first checkpoint exists: training is under way and the handler is set.
    wait_until(lambda: still_running(job_id) and list((preempted / "checkpoints").glob("ckpt-*.npz")),
               60, "checkpointing")
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    # The uninterrupted run meanwhile, as a second job of the same script.
    uninterrupted = run_job(SCRIPT, tmp_path, "-N1", "-n2", env={**SETTINGS, "MPINN_OUT": str(reference)})
    assert_completed(uninterrupted)
    assert uninterrupted.restarts == 0

    [job] = wait_until(lambda: [j for j in job_fields(job_id) if j["Restarts"] == "1"
                                and j["JobState"] in ("PENDING", "RUNNING", "COMPLETED")],
                       60, "requeued")
    start_requeued(job)
    [job] = wait_for(job_id, 120)
    log = open(job["StdOut"]).read()
    assert (job["JobState"], job["ExitCode"], job["Restarts"]) == ("COMPLETED", "0:0", "1"), log
    assert "USR1: the ranks checkpoint and stop" in log
    assert "mpinn: preempted at step" in log and "requeueing job" in log
    second_start = log.split(f"job {job_id} start 2:")[1]
    resumed_epochs = [line for line in second_start.splitlines() if line.startswith("epoch ")]
    assert 0 < len(resumed_epochs) < 100 and not resumed_epochs[0].startswith("epoch 1/")
    # the resumed run appends to the metrics log: every epoch once, in order
    assert [r["epoch"] for r in epochs(preempted / "metrics.jsonl")] == list(range(100))
    np.testing.assert_array_equal(np.load(preempted / "model.npz")["params"],
                                  np.load(reference / "model.npz")["params"])
