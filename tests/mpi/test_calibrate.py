"""A tiny calibration at any world size writes a profile the planner accepts (a few seconds)."""

import pytest

from mpinn.plan.calibrate import QUICK, calibrate
from mpinn.plan.layouts import Layout
from mpinn.plan.predict import predict_layout
from mpinn.plan.profile import SCHEMA, profile_from_dict
from mpinn.plan.workload import ModelSpec

pytestmark = pytest.mark.mpi
SPEC = ModelSpec((32, 64, 10))


def test_quick_calibration_gives_a_valid_profile(comm):
    result = calibrate(comm, SPEC, QUICK)
    if not comm.is_root:
        assert result is None
        return
    assert result["schema"] == SCHEMA and result["measured_ranks"] == comm.size
    assert result["compute"]["gemm_points"] and result["compute"]["gemm_flops_per_s"] > 0
    profile = profile_from_dict(result)
    assert predict_layout(SPEC, 64, Layout(), profile).step_s > 0
    if comm.size == 1:
        assert result["network"] is None
        return
    network = result["network"]
    assert 0.0 <= network["overlap"] <= 1.0
    link = network["intra_node"] if result["nodes"] == 1 else network["inter_node"]
    assert link["latency_s"] >= 0 and link["bandwidth_bytes_per_s"] > 0
    for name in ("allreduce", "reduce_scatter", "allgather"):
        fit = link["collectives"][name]
        assert fit["ranks"] == comm.size and len(fit["points"]) == len(QUICK.collective_bytes)
    assert predict_layout(SPEC, 64, Layout(data=comm.size), profile).comm_s > 0
