"""The cost model's formulas on hand-checked cases (mpinn.plan: pure functions, no MPI)."""

import pytest

from mpinn.plan import costs
from mpinn.plan.fit import fit_algorithms, fit_gemm, fit_point_to_point
from mpinn.plan.layouts import gradient_buckets, partition_stages, rank_params, tensor_pairs
from mpinn.plan.profile import AlphaBeta
from mpinn.plan.workload import ModelSpec

LINK = AlphaBeta(alpha_s=2e-6, beta_s_per_byte=1e-9)  # 2 us, 1 GB/s


def test_ring_allreduce_is_2_p_minus_1_over_p_bytes_plus_2_p_minus_1_latencies():
    # p = 4, 1 MB: 2*3/4 * 1e6 B * 1 ns/B = 1.5 ms, plus 2*3 * 2 us = 12 us
    assert costs.ring_allreduce_seconds(1e6, 4, LINK) == pytest.approx(1.5e-3 + 12e-6)


def test_recursive_doubling_and_rabenseifner():
    # p = 8: 3 exchanges of the whole buffer; Rabenseifner 2*3 latencies + 2*7/8 of the bytes
    assert costs.recursive_doubling_allreduce_seconds(1e3, 8, LINK) == pytest.approx(3 * (2e-6 + 1e-6))
    assert costs.rabenseifner_allreduce_seconds(1e6, 8, LINK) == pytest.approx(6 * 2e-6 + 1.75e-3)


def test_allreduce_takes_the_cheapest_algorithm():
    assert costs.allreduce_algorithm(8, 64, LINK) == "recursive_doubling"      # latency-bound
    assert costs.allreduce_algorithm(1e8, 64, LINK) == "rabenseifner"         # bandwidth-bound
    assert costs.allreduce_seconds(1e8, 64, LINK) == costs.rabenseifner_allreduce_seconds(1e8, 64, LINK)


def test_one_rank_communicates_nothing():
    for formula in (costs.allreduce_seconds, costs.ring_allreduce_seconds,
                    costs.reduce_scatter_seconds, costs.allgather_seconds):
        assert formula(1e6, 1, LINK) == 0.0


def test_reduce_scatter_plus_allgather_moves_what_a_ring_allreduce_moves():
    rs = costs.reduce_scatter_seconds(1e6, 4, LINK)
    assert rs == pytest.approx(2 * 2e-6 + 0.75e-3)  # recursive halving: log2(4) latencies
    assert rs + costs.allgather_seconds(1e6, 4, LINK) == pytest.approx(
        costs.rabenseifner_allreduce_seconds(1e6, 4, LINK))


@pytest.mark.parametrize("stages, micro_batches, bubble", [(1, 1, 0.0), (4, 1, 0.75), (4, 12, 0.2), (2, 7, 0.125)])
def test_pipeline_bubble_is_p_minus_1_over_m_plus_p_minus_1(stages, micro_batches, bubble):
    assert costs.pipeline_bubble_fraction(stages, micro_batches) == pytest.approx(bubble)


@pytest.mark.parametrize("overlap, finish", [(0.0, 5.0), (1.0, 3.0), (0.5, 4.0)])
def test_overlapped_finish(overlap, finish):
    # two 1 s reductions ready at 1 s and 2 s; compute ends at 3 s
    assert costs.overlapped_finish([1.0, 2.0], [1.0, 1.0], 3.0, overlap) == pytest.approx(finish)


def test_fits_recover_the_parameters_that_made_the_points():
    truth = AlphaBeta(3e-6, 2e-10)
    sizes = [8, 1024, 65536, 2**20, 2**24]
    p2p = fit_point_to_point([(n, costs.point_to_point_seconds(n, truth)) for n in sizes])
    assert (p2p.alpha_s, p2p.beta_s_per_byte) == pytest.approx((3e-6, 2e-10), rel=1e-6)
    points = [(n, costs.allreduce_seconds(n, 8, truth)) for n in sizes]
    fitted, chosen = fit_algorithms(points, 8, costs.ALLREDUCE_ALGORITHMS)
    assert (fitted.alpha_s, fitted.beta_s_per_byte) == pytest.approx((3e-6, 2e-10), rel=1e-6)
    assert chosen[0] == "recursive_doubling" and chosen[-1] == "rabenseifner"
    shapes = [(32, 64, 64), (128, 256, 256), (512, 1024, 1024)]
    rate, operand_rate, overhead = fit_gemm([(m, k, n, 1e-6 + 4 * (m * k + k * n + m * n) / 2e10
                                                 + 2 * m * k * n / 5e10) for m, k, n in shapes + [(8, 512, 64)]])
    assert (rate, operand_rate, overhead) == pytest.approx((5e10, 2e10, 1e-6), rel=1e-6)


def test_stages_balance_parameters_and_tensor_pairs():
    spec = ModelSpec((784, 1024, 1024, 1024, 10))
    assert partition_stages(spec, 2) == [range(0, 2), range(2, 4)]
    assert partition_stages(spec, 4) == [range(i, i + 1) for i in range(4)]
    assert tensor_pairs(range(0, 4)) == ([(0, 1), (2, 3)], [])
    assert tensor_pairs(range(1, 4)) == ([(1, 2)], [3])
    whole = rank_params(spec, range(4), 1)
    assert whole == spec.num_params
    # column layers split W and b; row layers split W, keep b whole
    assert rank_params(spec, range(0, 2), 2) == (784 * 1024 + 1024) / 2 + 1024 * 1024 / 2 + 1024


def test_gradient_buckets_are_the_ones_data_parallel_reduces():
    from mpinn.nn import Dense, Sequential
    from mpinn.layout import plan_buckets

    widths = (20, 300, 300, 50, 3)
    model = Sequential([Dense(w, input_dim=widths[i], activation="relu") for i, w in enumerate(widths[1:])])
    model.build()
    spec = ModelSpec(widths)
    for bucket_bytes in (4, 4 * 20_000, 4 * 100_000, 4 * 10**7):
        buckets = plan_buckets(model.layer_offsets, model.param_layers, model.grads.size, bucket_bytes // 4)
        assert [hi - lo for lo, hi in buckets] == [n for _, n in gradient_buckets(spec, bucket_bytes)]


def test_measured_points_correct_the_formula_size_by_size():
    # measured 2x the formula at 1 MB and 1x at 100 MB (on 4 ranks): halfway in log size, 1.5x
    plain = AlphaBeta(0.0, 1e-9)
    measured = ((1e6, 2 * costs.allreduce_seconds(1e6, 4, plain)), (1e8, costs.allreduce_seconds(1e8, 4, plain)))
    corrected = AlphaBeta(0.0, 1e-9, measured, 4)
    assert costs.allreduce_seconds(1e6, 4, corrected) == pytest.approx(measured[0][1])
    assert costs.allreduce_seconds(1e7, 8, corrected) == pytest.approx(1.5 * costs.allreduce_seconds(1e7, 8, plain))
    assert costs.allreduce_seconds(1e3, 8, corrected) == pytest.approx(2 * costs.allreduce_seconds(1e3, 8, plain))


def test_gemm_fit_keeps_the_flop_term_on_overhead_bound_shapes():
    # tiny matmuls whose time is all per-call overhead and operand traffic still get a rate
    points = [(m, k, n, 2e-6 + 4 * (m * k + k * n + m * n) / 1e10) for m, k, n in
              [(8, 10, 64), (8, 64, 10), (32, 64, 10), (32, 10, 64)]]
    rate, _, _ = fit_gemm(points)
    assert 0 < rate < float("inf")


def test_calibrated_matmuls_are_the_models_own_and_their_tensor_slices():
    from mpinn.plan.measure import model_gemm_shapes

    spec = ModelSpec((6, 8, 3))
    whole = {(4, 6, 8), (6, 4, 8), (4, 8, 6), (4, 8, 3), (8, 4, 3), (4, 3, 8)}  # x @ W, x.T @ dout, dout @ W.T
    assert set(model_gemm_shapes(spec, 4)) == whole
    halves = {(4, 6, 4), (6, 4, 4), (4, 4, 6), (4, 3, 8), (3, 4, 8), (4, 8, 3), (4, 4, 3), (4, 3, 4)}
    assert set(model_gemm_shapes(spec, 4, splits=(2,))) == whole | halves  # 3 outputs do not halve
