"""The parts of --on-failure shrink that need no MPI: the roll-back to the unit every survivor is
in, the metrics log's takeover, and the fault-injection variable (the jobs: test_shrink.py)."""

import json

import numpy as np
import pytest

from mpinn.errors import RankLost
from mpinn.faults import planned
from mpinn.optim import SGD
from mpinn.train.callbacks import MetricsLog
from mpinn.train.recovery import Recovery, kept, put_back


class FakeComm:
    """A communicator that has lost rank 3, and whose survivors report being in ``units``."""

    def __init__(self, units):
        self.units, self.is_root, self.size = units, True, 3

    def shrink(self):
        return [3]

    def allgather_obj(self, unit):
        return [unit, *self.units]


class FakeStrategy:
    def __init__(self, comm, params, optimizer):
        self.comm, self.params, self.optimizer, self.exponent = comm, params, optimizer, 0
        self.update_hook = None

    def local_state(self, model):
        return self.params, self.optimizer

    def redo_state(self):
        return self.exponent

    def load_redo_state(self, state):
        self.exponent = state

    def step(self):
        """A unit's step: this rank's update (the strategy calls the hook first), then more."""
        self.exponent += 1
        self.update_hook()
        self.optimizer.step(self.params, np.ones_like(self.params))


class Model:
    def __init__(self, optimizer):
        self.optimizer = optimizer


class Loop:
    def __init__(self):
        self.position = np.zeros(1)


def test_a_rank_one_unit_ahead_rolls_back_to_the_unit_a_survivor_is_in_and_redoes_it(capsys):
    params, optimizer = np.zeros(4, np.float32), SGD(lr=0.5, momentum=0.9)
    strategy = FakeStrategy(FakeComm(units=[1]), params, optimizer)
    loop, lost = Loop(), []
    recovery = Recovery(Model(optimizer), strategy, lambda: kept(loop), lambda m: put_back(loop, m),
                        lost.extend)
    failures = iter([RankLost([3])])

    def unit():
        strategy.step()
        loop.position += 1
        if recovery.unit == 1 and next(failures, None):  # dies in unit 1, after its update
            raise RankLost([3])

    recovery.run(unit)  # unit 0: one update
    after_one = (params.copy(), optimizer.state["momentum_buffer"].copy(), strategy.exponent)
    recovery.run(unit)  # unit 1 fails after its update; the survivors are in unit 1: redo it
    assert lost == [3] and recovery.unit == 2 and loop.position[0] == 2 and optimizer.steps == 2
    assert "rank(s) 3 of the job died; continuing on 3 rank(s)" in capsys.readouterr().err

    recovery._roll_back(1)  # a survivor still in unit 1: back to the state after unit 0, exactly
    assert np.array_equal(params, after_one[0]) and loop.position[0] == 1
    assert np.array_equal(optimizer.state["momentum_buffer"], after_one[1]) and strategy.exponent == after_one[2]
    assert optimizer.steps == 1


class Strategy:
    def __init__(self, is_root):
        self.comm = type("Comm", (), {"is_root": is_root})()


def test_the_metrics_log_writes_each_record_once_and_a_new_writer_goes_on_after_the_last(tmp_path):
    path = tmp_path / "m.jsonl"
    writer = MetricsLog(path, rank=0)
    writer.set_params({"start_step": 0, "start_epoch": 0})
    writer.set_strategy(Strategy(True))
    writer.on_train_begin()
    for step in (1, 2, 2, 3):  # step 2 redone after a rank died
        writer.on_step_end({"step": step, "loss": 1.0})
    writer.on_epoch_end(0, {"loss": 1.0})
    writer.on_epoch_end(0, {"loss": 1.0})
    with path.open("a") as f:
        f.write('{"event": "step", "st')  # the writer died mid-line
    heir = MetricsLog(path, rank=1)
    heir.set_strategy(Strategy(False))
    heir.on_step_end({"step": 4, "loss": 1.0})  # not the writer yet
    heir.strategy.comm.is_root = True
    heir.on_ranks_lost([0])
    for step in (3, 4):
        heir.on_step_end({"step": step, "loss": 1.0})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["event"], r.get("step", r.get("epoch"))) for r in records] == [
        ("step", 1), ("step", 2), ("step", 3), ("epoch", 0), ("step", 4)]


def test_the_fault_variable_names_point_step_and_rank_or_says_what_is_wrong():
    assert planned({"MPINN_FAULT_INJECT": "reduce:3:1,forward:5:0"}) == {("reduce", 3, 1),
                                                                          ("forward", 5, 0)}
    with pytest.raises(ValueError, match="'backward:3:1' is not point:step:rank with a point "
                                         "among forward, reduce, checkpoint"):
        planned({"MPINN_FAULT_INJECT": "backward:3:1"})
