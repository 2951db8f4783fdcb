"""Plans for hand-written profiles where the answer is clear; profile validation; the CLI."""

import json
import subprocess
import sys

import pytest

from mpinn.cli import main
from mpinn.errors import ConfigError
from mpinn.plan.layouts import Layout
from mpinn.plan.measure import model_gemm_shapes
from mpinn.plan.planner import overall_best, parse_ranks, plan
from mpinn.plan import costs
from mpinn.plan.predict import messages_leaving_a_node, predict_layout
from mpinn.plan.profile import load_profile, profile_from_dict
from mpinn.plan.workload import ComputeCost, ModelSpec, gemm_formula


def profile_dict(latency_s=2e-6, bandwidth=1.25e10, cores=48, overlap=0.0):
    link = {"latency_s": latency_s, "bandwidth_bytes_per_s": bandwidth}
    return {"schema": "mpinn-profile/1", "cores_per_node": cores,
            "compute": {"gemm_flops_per_s": 5e10, "gemm_overhead_s": 2e-6, "memory_bytes_per_s": 1e10},
            "network": {"overlap": overlap, "intra_node": link, "inter_node": link}}


FAST = profile_from_dict(profile_dict())
SLOW = profile_from_dict(profile_dict(latency_s=1e-3, bandwidth=1e6))  # 1 ms, 1 MB/s
BIG = ModelSpec((784, 1024, 1024, 1024, 10))


def test_a_tiny_model_on_a_slow_network_is_not_split():
    plans = plan(ModelSpec((8, 16, 4)), 64, [1, 2, 4, 8], SLOW)
    assert overall_best(plans).ranks == 1
    for rank_plan in plans[1:]:
        assert rank_plan.recommended.step_s > plans[0].recommended.step_s


def test_a_large_model_on_a_fast_network_uses_every_rank():
    plans = plan(BIG, 4096, [1, 2, 4, 8, 16], FAST)
    assert overall_best(plans).ranks == 16
    assert plans[-1].recommended.strategy in ("data", "zero")
    assert plans[-1].best["data"].step_s < plans[-1].best["pipeline"].step_s if "pipeline" in plans[-1].best else True


def test_the_memory_limit_rules_out_replicas():
    unlimited = plan(BIG, 4096, [4], FAST)[0]
    limit = 0.5 * unlimited.best["data"].memory_bytes
    limited = plan(BIG, 4096, [4], FAST, memory_limit_bytes=limit)[0]
    assert limited.recommended.memory_bytes <= limit
    assert limited.recommended.strategy != "data"
    assert plan(BIG, 4096, [4], FAST, memory_limit_bytes=1.0)[0].recommended is None


def test_predictions_add_up_and_scale():
    one = predict_layout(BIG, 4096, Layout(), FAST)
    assert one.comm_s == 0 and one.idle_s == 0
    for layout in (Layout(data=8), Layout(data=8, zero=True), Layout(pipeline=4, micro_batches=16),
                   Layout(tensor=4), Layout(data=2, pipeline=2, tensor=2, micro_batches=8)):
        p = predict_layout(BIG, 4096, layout, FAST)
        assert p.step_s == pytest.approx(p.compute_s + p.comm_s + p.idle_s)
        assert 0 < p.step_s < one.step_s and p.comm_s > 0
    assert predict_layout(BIG, 4096, Layout(pipeline=4, micro_batches=16), FAST).idle_s > 0


def test_oversubscribed_ranks_compute_slower():
    packed = profile_from_dict({**profile_dict(cores=2), "ranks_per_node": 4})  # 4 ranks, 2 cores
    spread = profile_from_dict(profile_dict(cores=2))                       # 2 ranks per node
    on_two = predict_layout(BIG, 512, Layout(data=2), packed).compute_s
    assert on_two == predict_layout(BIG, 512, Layout(data=2), spread).compute_s
    # four ranks on two cores: half the rows each, at half the speed
    assert predict_layout(BIG, 512, Layout(data=4), packed).compute_s > 0.95 * on_two
    assert predict_layout(BIG, 512, Layout(data=4), spread).compute_s < 0.6 * on_two


def test_layouts_that_cannot_run_are_explained():
    rank_plan = plan(BIG, 4096, [8], FAST)[0]
    assert rank_plan.unavailable["pipeline"] == ("cannot split a model with 4 layers that hold "
                                                 "parameters into 8 pipeline stages; choose 1, 2, 3 "
                                                 "or 4 stages")  # the pipeline strategy's words
    with pytest.raises(ConfigError, match=r"\[1024, 1024\] are not divisible by 3 tensor-parallel "
                                          r"ranks; choose 1, 2, 4, .* or 1024 ranks"):
        predict_layout(BIG, 4096, Layout(tensor=3), FAST)
    with pytest.raises(ConfigError, match="cannot feed 8"):
        predict_layout(BIG, 4, Layout(data=8), FAST)


def test_parse_ranks():
    assert parse_ranks("1,2,4,...,64") == [1, 2, 4, 8, 16, 32, 64]
    assert parse_ranks("2,4,...,12") == [2, 4, 8, 12]
    assert parse_ranks("1,3,...,9") == [1, 3, 9]
    assert parse_ranks("4, 6, ..., 12") == [4, 6, 8, 10, 12]
    for bad in ("0,2", "a,b", "4,2", "...,8", "1,2,...", ""):
        with pytest.raises(ConfigError):
            parse_ranks(bad)


def test_profile_validation_names_the_field(tmp_path):
    data = profile_dict()
    del data["compute"]["gemm_flops_per_s"]
    with pytest.raises(ConfigError, match="compute.gemm_flops_per_s"):
        profile_from_dict(data)
    with pytest.raises(ConfigError, match="network.overlap"):
        profile_from_dict(profile_dict(overlap=2.0))
    no_network = {**profile_dict(), "network": None}
    with pytest.raises(ConfigError, match="no network part"):
        predict_layout(BIG, 64, Layout(data=2), profile_from_dict(no_network))
    assert predict_layout(BIG, 64, Layout(), profile_from_dict(no_network)).step_s > 0
    bad_point = profile_dict()
    bad_point["compute"]["gemm_points"] = [{"m": 8, "k": 64, "n": 64}]
    with pytest.raises(ConfigError, match="compute.gemm_points.seconds must be a number"):
        profile_from_dict(bad_point)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_profile(tmp_path / "bad.json")


def run_cli(capsys, *args):
    code = main(["plan", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("args, message", [
    (["--strategy", "data,magic"], "unknown strategy 'magic'"),
    (["--ranks", "1,two,4"], "--ranks must list positive integers"),
    (["--ranks", "4,2"], "--ranks must be increasing"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--optimizer", "adagrad"], "invalid choice: 'adagrad'"),
    (["--momentum", "-0.5"], "--momentum must be >= 0"),
    (["--model", "784"], "model widths must be two or more"),
    (["--memory-per-rank", "lots"], "--memory-per-rank must be a size"),
])
def test_cli_bad_input_exits_2_with_one_message(capsys, tmp_path, args, message):
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps(profile_dict()))
    code, out, err = run_cli(capsys, "--profile", profile, *args)
    assert code == 2 and message in err and err.count("mpinn: error:") == 1 and out == ""


def test_cli_missing_profile(capsys, tmp_path):
    code, out, err = run_cli(capsys, "--profile", tmp_path / "none.json")
    assert code == 2 and "cannot read profile" in err and "mpinn calibrate" in err


def test_cli_plan_table_json_and_plot(capsys, tmp_path):
    profile, out_json, png = tmp_path / "p.json", tmp_path / "plan.json", tmp_path / "plan.png"
    profile.write_text(json.dumps(profile_dict()))
    code, out, err = run_cli(capsys, "--profile", profile, "--ranks", "1,2,4,...,64", "--batch", 1024,
                             "--memory-per-rank", "1GiB", "--json", out_json, "--plot", png)
    assert code == 0, err
    assert "PREDICTED" in out and "| 64 | zero" in out and "fastest overall" in out
    result = json.loads(out_json.read_text())
    assert [p["ranks"] for p in result["plans"]] == [1, 2, 4, 8, 16, 32, 64]
    row = result["plans"][-1]["strategies"]["data"]
    assert {"step_s", "compute_s", "comm_s", "idle_s", "efficiency", "memory_bytes_per_rank"} <= set(row)
    assert png.exists() or "matplotlib is not installed" in out


def test_the_cost_model_loads_neither_mpi_nor_numpy_for_planning():
    code = ("import sys, mpinn.plan.planner, mpinn.plan.report, mpinn.cli.planning; "
            "sys.exit(('mpi4py' in sys.modules) + 2 * ('numpy' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_only_pipeline_boundaries_between_nodes_pay_the_inter_node_link():
    slow_between = profile_dict(cores=2)
    slow_between["ranks_per_node"] = 2
    slow_between["network"]["inter_node"] = {"latency_s": 1e-3, "bandwidth_bytes_per_s": 1e6}
    profile = profile_from_dict(slow_between)
    spec, rows = ModelSpec((64, 64, 64, 64, 64)), 64
    four_stages = predict_layout(spec, rows, Layout(pipeline=4), profile)   # nodes: stages 0,1 | 2,3
    message = 1e-3 + rows * 64 * 4 / 1e6
    # Stage 1 sends activations to stage 2 across the nodes while their gradient comes back
    # (full duplex: one message time), and talks to stage 0 within its node.
    assert message < four_stages.comm_s < 1.1 * message
    assert predict_layout(spec, rows, Layout(pipeline=2), profile).comm_s < 0.01 * message  # one node


def test_tensor_ranks_crossing_a_node_boundary_share_its_link():
    two_per_node = profile_dict(cores=2)
    two_per_node["ranks_per_node"] = 2
    two_per_node["network"]["inter_node"] = {"latency_s": 1e-3, "bandwidth_bytes_per_s": 1e6}
    profile = profile_from_dict(two_per_node)
    # d1 x p2 x t2: both tensor ranks of stage 0 (node 0) send to stage 1 (node 1) at once
    assert messages_leaving_a_node(Layout(pipeline=2, tensor=2), 2, 0) == 2
    assert [messages_leaving_a_node(Layout(pipeline=4), 2, k) for k in range(3)] == [0, 1, 0]
    # d2 x p2 x t1: each replica's boundary stays on its node
    assert messages_leaving_a_node(Layout(data=2, pipeline=2), 2, 0) == 0
    spec, rows = ModelSpec((64, 64, 64, 64, 64)), 64
    shared = predict_layout(spec, rows, Layout(pipeline=2, tensor=2), profile)
    message = 1e-3 + rows * 64 * 4 / 1e6  # two senders in each direction: twice one message
    assert 2 * message < shared.comm_s < 2.1 * message


def test_a_stream_of_pipeline_messages_gets_the_sustained_rate_not_the_burst():
    # a token bucket lets a lone 32 KB message through at 4x the rate that 8 MB measure
    burst = profile_dict(cores=1)
    burst["network"]["inter_node"] = {
        "latency_s": 1e-5, "bandwidth_bytes_per_s": 1e8,
        "ping_pong": [{"bytes": 32768, "seconds": 32768 / 1e8}, {"bytes": 2**23, "seconds": 2**23 / 2.5e7}]}
    profile, spec = profile_from_dict(burst), ModelSpec((64, 64, 64))
    assert profile.link(True).sustained_bytes_per_s == pytest.approx(2.5e7)
    rows = 128  # one micro-batch of 128 x 64 floats = 32 KB
    two_stages = predict_layout(spec, rows, Layout(pipeline=2), profile)
    assert two_stages.comm_s == pytest.approx(32768 / 2.5e7)  # not 32768 / 1e8


def test_a_message_takes_the_measured_ping_pong_time_at_the_measured_sizes():
    burst = profile_dict(cores=2)
    burst["network"]["inter_node"] = {
        "latency_s": 1e-5, "bandwidth_bytes_per_s": 1e8,  # a fit pulled up by a burst
        "ping_pong": [{"bytes": 8, "seconds": 1e-5}, {"bytes": 2**20, "seconds": 0.03}]}
    link = profile_from_dict(burst).link(True)
    assert costs.point_to_point_seconds(2**20, link.message) == pytest.approx(0.03)
    assert costs.point_to_point_seconds(2**20, link.point_to_point) == pytest.approx(1e-5 + 2**20 / 1e8)


def with_gemm_points(data: dict, spec: ModelSpec, rows: list[int], seconds, splits=()) -> dict:
    """``data`` with the matmul points calibrate would time: seconds(m, k, n, formula)."""
    compute = profile_from_dict(data).compute
    shapes = sorted({shape for r in rows for shape in model_gemm_shapes(spec, r, splits)})
    data["compute"]["gemm_points"] = [{"m": m, "k": k, "n": n, "seconds": seconds(m, k, n, gemm_formula(compute, m, k, n))}
                                      for m, k, n in shapes]
    return data


def test_a_calibrated_matmul_takes_its_measured_time_interpolated_over_the_rows():
    spec = ModelSpec((64, 64, 64))
    # 8-row matmuls took twice the formula, 32-row ones what it says
    data = with_gemm_points(profile_dict(), spec, [8, 32], lambda m, k, n, formula: formula * (2 if 8 in (m, k) else 1))
    cost, plain = ComputeCost(profile_from_dict(data).compute), ComputeCost(FAST.compute)
    assert cost.gemm(8, 64, 64) == pytest.approx(2 * plain.gemm(8, 64, 64))
    assert cost.gemm(64, 8, 64, rows_at=1) == pytest.approx(2 * plain.gemm(64, 8, 64))      # dW = x.T @ dout
    assert cost.gemm(16, 64, 64) == pytest.approx(1.5 * plain.gemm(16, 64, 64))  # half-way in log rows
    assert cost.gemm(4, 64, 64) == pytest.approx(2 * plain.gemm(4, 64, 64))      # held beyond the ends
    assert cost.gemm(128, 64, 64) == pytest.approx(plain.gemm(128, 64, 64))
    assert cost.gemm(8, 32, 64) == pytest.approx(plain.gemm(8, 32, 64))          # a tensor slice: not timed
    sliced = with_gemm_points(profile_dict(), spec, [8, 32], lambda m, k, n, formula: 3 * formula, splits=(2,))
    assert ComputeCost(profile_from_dict(sliced).compute).gemm(8, 32, 64) == pytest.approx(3 * plain.gemm(8, 32, 64))
    doubled = profile_dict()
    doubled["compute"].update(measured_with_oversubscription=2.0, gemm_points=data["compute"]["gemm_points"])
    # the same times measured with two ranks per core: the 8-row ones are what the formula
    # says a shared core takes, the 32-row ones half of it
    shared = ComputeCost(profile_from_dict(doubled).compute)
    assert shared.gemm(8, 64, 64) == pytest.approx(plain.gemm(8, 64, 64))
    assert shared.gemm(32, 64, 64) == pytest.approx(0.5 * plain.gemm(32, 64, 64))


def test_slow_thin_matmuls_make_many_micro_batches_cost_more():
    """A pipeline's micro-batches of few rows run thin matmuls; where the calibration measured
    those slower than the fit (a weight streamed from memory per call), the planner charges it."""
    rows, slow_stream = [8, 32, 128, 512], 2e9  # every call reads its weight at 2 GB/s
    data = with_gemm_points(profile_dict(cores=2), BIG, rows,
                            lambda m, k, n, formula: formula + 4 * max(m * k, k * n, m * n) / slow_stream)
    thin = profile_from_dict(data)
    sixteen, four = Layout(pipeline=2, micro_batches=16), Layout(pipeline=2, micro_batches=4)
    weights = 4 * (2 * 784 * 1024 + 3 * 1024 * 1024) / slow_stream  # stage 0: forward, dW, dx (not layer 0)
    extra = predict_layout(BIG, 128, sixteen, thin).compute_s - predict_layout(BIG, 128, sixteen, FAST).compute_s
    assert extra == pytest.approx(16 * weights, rel=0.05)
    assert predict_layout(BIG, 128, sixteen, thin).step_s > predict_layout(BIG, 128, four, thin).step_s
    assert predict_layout(BIG, 128, sixteen, FAST).step_s < predict_layout(BIG, 128, four, FAST).step_s
