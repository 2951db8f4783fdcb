"""Model-parallel layouts without MPI: schedules, their validator, stage bounds, tensor slices,
grid shapes; and the shared copies that keep several micro-batches in flight."""

import subprocess
import sys

import numpy as np
import pytest

from mpinn.errors import ConfigError
from mpinn.layout import (Action, GridShape, gpipe, inference, make_schedule, one_f_one_b, parse_grid,
                          partition_blocks, peak_in_flight, plan_local_model, simulate, stage_actions,
                          validate)
from mpinn.layout.stages import COLUMN, ROW, WHOLE, stage_bounds
from mpinn.nn import CrossEntropyLoss, Dense, ReLU, Sequential

SIZES = [(p, m) for p in (1, 2, 3, 4) for m in (1, 2, 3, 8)]


def test_importing_the_layouts_loads_no_mpi():
    code = "import sys, mpinn.layout; sys.exit('mpi4py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("stages, micro_batches", SIZES)
@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_schedules_are_valid_and_have_the_textbook_bubble(name, stages, micro_batches):
    schedule = make_schedule(name, stages, micro_batches)
    for forward_cost, backward_cost in ((1.0, 2.0), (1.0, 1.0)):
        result = simulate(schedule, stages, forward_cost, backward_cost)
        assert result["bubble"] == pytest.approx((stages - 1) / (micro_batches + stages - 1))


@pytest.mark.parametrize("stages, micro_batches", SIZES)
def test_1f1b_bounds_activations_in_flight_where_gpipe_keeps_all(stages, micro_batches):
    for s in range(stages):
        assert peak_in_flight(gpipe(stages, micro_batches), s) == micro_batches
        assert peak_in_flight(one_f_one_b(stages, micro_batches), s) == min(micro_batches, stages - s)


def test_a_stage_program_reads_as_expected():
    program = [(a.kind, a.micro_batch) for a in stage_actions(one_f_one_b(2, 2), 1)]
    assert program == [("recv_activation", 0), ("forward", 0), ("backward", 0), ("send_grad", 0),
                       ("recv_activation", 1), ("forward", 1), ("backward", 1), ("send_grad", 1)]
    validate(inference(3, 4), 3, 4)


def test_validator_rejects_a_send_without_its_receive():
    schedule = [a for a in gpipe(2, 2) if a != Action("recv_activation", 1, 1)]
    with pytest.raises(ConfigError, match="send_activation.*micro_batch=1.*no matching recv_activation"):
        validate(schedule, 2, 2)


def test_validator_rejects_a_schedule_that_deadlocks():
    """Each micro-batch is in order, but stage 0 waits for micro-batch 1's gradient before it
    sends micro-batch 0, which stage 1 must receive first: both wait forever."""
    stage_0 = [Action("forward", 0, 0), Action("forward", 1, 0), Action("send_activation", 1, 0),
               Action("recv_grad", 1, 0), Action("backward", 1, 0), Action("send_activation", 0, 0),
               Action("recv_grad", 0, 0), Action("backward", 0, 0)]
    with pytest.raises(ConfigError, match="deadlocks"):
        validate(stage_0 + stage_actions(gpipe(2, 2), 1), 2, 2)


def test_validator_rejects_backward_before_forward_and_repeats():
    schedule = gpipe(1, 2)
    with pytest.raises(ConfigError, match="runs Action\\(kind='backward'"):
        validate(schedule[::-1], 1, 2)
    with pytest.raises(ConfigError, match="appears 2 times"):
        validate(schedule + schedule[:1], 1, 2)
    with pytest.raises(ConfigError, match="unknown pipeline schedule 'zigzag'"):
        make_schedule("zigzag", 2, 2)


def test_partition_minimises_the_largest_stage():
    assert partition_blocks([1, 1, 1, 1], 2) == [0, 2]
    assert partition_blocks([10, 1, 1, 1], 2) == [0, 1]
    assert partition_blocks([3, 1, 1, 3], 3) == [0, 1, 3]


# dense relu dense relu dense softmax: parameter counts of a 4-30-30-3 MLP
TYPES = ["Dense", "ReLU", "Dense", "ReLU", "Dense", "Softmax"]
COUNTS = [150, 0, 930, 0, 93, 0]
WIDTHS = [4, 30, 30, 30, 30, 3, 3]


def test_stages_are_whole_blocks_balanced_by_parameters_or_given():
    assert stage_bounds(COUNTS, 2) == [(0, 2), (2, 6)]
    assert stage_bounds(COUNTS, 3) == [(0, 2), (2, 4), (4, 6)]
    assert stage_bounds(COUNTS, 2, boundaries=(4,)) == [(0, 4), (4, 6)]
    assert stage_bounds(COUNTS, 2, costs=[5.0, 1.0, 1.0]) == [(0, 2), (2, 6)]


@pytest.mark.parametrize("stages, boundaries, message", [
    (4, (), "3 layers that hold parameters into 4 pipeline stages; choose 1, 2 or 3 stages"),
    (2, (1, 2), "2 pipeline stages need 1 boundaries"),
    (2, (5,), "stage 1 \\(layers 5..5\\) holds no parameters"),
    (3, (4, 2), "increasing layer indices in 1..5"),
])
def test_bad_stage_requests_name_the_numbers_and_the_choices(stages, boundaries, message):
    with pytest.raises(ConfigError, match=message):
        stage_bounds(COUNTS, stages, boundaries)


def test_tensor_slices_cut_dense_pairs_by_columns_then_rows():
    plan = plan_local_model(TYPES, COUNTS, WIDTHS, stages=1, stage=0, tensor=3, tensor_rank=1)
    assert [(s.split, s.lo, s.hi) for s in plan.layers] == [
        (COLUMN, 10, 20), (WHOLE, 0, 0), (ROW, 10, 20), (WHOLE, 0, 0), (WHOLE, 0, 0), (WHOLE, 0, 0)]


def test_a_width_not_divisible_lists_the_valid_tensor_sizes():
    with pytest.raises(ConfigError, match=r"\[30\] are not divisible by 4 tensor-parallel ranks; "
                                          r"choose 1, 2, 3, 5, 6, 10, 15 or 30 ranks"):
        plan_local_model(TYPES, COUNTS, WIDTHS, stages=1, stage=0, tensor=4, tensor_rank=0)
    with pytest.raises(ConfigError, match="needs a Dense layer followed"):
        plan_local_model(["Dense"], [15], [4, 3], stages=1, stage=0, tensor=2, tensor_rank=0)


def test_grid_shapes_parse_place_ranks_and_check_the_world():
    grid = parse_grid("data=2, pipeline=3")
    assert grid == GridShape(2, 3, 1) and grid.size == 6
    assert [grid.coordinates(r) for r in (0, 1, 3, 5)] == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 2, 0)]
    assert GridShape(1, 2, 2).coordinates(3) == (0, 1, 1)
    with pytest.raises(ConfigError, match="= 6 ranks but the job has 4; choose one whose product is 4"):
        grid.check_world(4)
    for text, message in (("model=2", "unknown grid axis 'model'"), ("data=x", "needs an integer"),
                          ("data=2,data=2", "given twice"), ("", "empty grid")):
        with pytest.raises(ConfigError, match=message):
            parse_grid(text)


def test_micro_batches_in_flight_on_shared_copies_give_the_whole_batch_gradient():
    model = Sequential([Dense(5, input_dim=3), ReLU(), Dense(2)], seed=1, dtype=np.float64)
    x, y = np.random.default_rng(0).standard_normal((6, 3)), np.array([0, 1, 1, 0, 1, 0])
    loss = CrossEntropyLoss()
    loss.forward(model.forward(x), y)
    model.zero_grad()
    model.backward(loss.backward())
    whole = model.grads.copy()
    model.zero_grad()
    copies = [model.shared_copy() for _ in range(2)]
    douts = []
    for copy, rows in zip(copies, (slice(0, 4), slice(4, 6))):  # both forwards, then both backwards
        loss.forward(copy.forward(x[rows]), y[rows])
        douts.append(loss.backward() * (len(y[rows]) / len(y)))
    for copy, dout in zip(copies, douts):
        copy.backward(dout)
    assert copies[0].params is model.params
    np.testing.assert_allclose(model.grads, whole, rtol=1e-12)
