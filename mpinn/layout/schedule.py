"""Pipeline schedules as plain data: a list of (action, micro-batch, stage), one program per stage.

A stage runs its own actions in list order. Sends are non-blocking (they never wait); a
receive waits until the matching send has been posted. ``validate`` checks, without MPI,
that every send has exactly one matching receive, that each stage computes every
micro-batch once in a sensible order, and that executing the schedule under those rules
cannot deadlock. ``simulate`` replays it with compute costs to give the idle (bubble)
fraction the schedule implies.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from mpinn.errors import ConfigError, require_positive_int, unknown_name

FORWARD, BACKWARD = "forward", "backward"
SEND_ACTIVATION, RECV_ACTIVATION = "send_activation", "recv_activation"
SEND_GRAD, RECV_GRAD = "send_grad", "recv_grad"
COMPUTE = (FORWARD, BACKWARD)
SENDS = {SEND_ACTIVATION: (RECV_ACTIVATION, +1), SEND_GRAD: (RECV_GRAD, -1)}
RECEIVES = {recv: (send, -step) for send, (recv, step) in SENDS.items()}


class Action(NamedTuple):
    """One step of one stage's program."""

    kind: str
    micro_batch: int
    stage: int


def _forward(k: int, s: int, stages: int) -> list[Action]:
    """A forward with its receive from the previous stage and its send to the next one."""
    recv = [Action(RECV_ACTIVATION, k, s)] if s > 0 else []
    send = [Action(SEND_ACTIVATION, k, s)] if s < stages - 1 else []
    return [*recv, Action(FORWARD, k, s), *send]


def _backward(k: int, s: int, stages: int) -> list[Action]:
    """A backward with its receive from the next stage and its send to the previous one."""
    recv = [Action(RECV_GRAD, k, s)] if s < stages - 1 else []
    send = [Action(SEND_GRAD, k, s)] if s > 0 else []
    return [*recv, Action(BACKWARD, k, s), *send]


def gpipe(stages: int, micro_batches: int) -> list[Action]:
    """GPipe: every stage runs all its forwards, then all its backwards (m activations kept)."""
    _check_sizes(stages, micro_batches)
    return [action for s in range(stages)
            for action in [a for k in range(micro_batches) for a in _forward(k, s, stages)]
            + [a for k in range(micro_batches) for a in _backward(k, s, stages)]]


def one_f_one_b(stages: int, micro_batches: int) -> list[Action]:
    """1F1B: stage s runs P-1-s warm-up forwards, then alternates one forward and one backward,
    then drains; it never holds more than P-s micro-batches' activations."""
    _check_sizes(stages, micro_batches)
    schedule = []
    for s in range(stages):
        warmup = min(stages - 1 - s, micro_batches)
        program = [a for k in range(warmup) for a in _forward(k, s, stages)]
        for k in range(micro_batches - warmup):
            program += _forward(warmup + k, s, stages) + _backward(k, s, stages)
        for k in range(micro_batches - warmup, micro_batches):
            program += _backward(k, s, stages)
        schedule += program
    return schedule


def inference(stages: int, micro_batches: int) -> list[Action]:
    """Forwards only, micro-batch after micro-batch (evaluation)."""
    _check_sizes(stages, micro_batches)
    return [a for s in range(stages) for k in range(micro_batches) for a in _forward(k, s, stages)]


SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b}


def make_schedule(name: str, stages: int, micro_batches: int) -> list[Action]:
    """The named training schedule ("gpipe" or "1f1b"), validated."""
    if name not in SCHEDULES:
        raise unknown_name("pipeline schedule", name, SCHEDULES)
    schedule = SCHEDULES[name](stages, micro_batches)
    validate(schedule, stages, micro_batches)
    return schedule


def _check_sizes(stages: int, micro_batches: int) -> None:
    require_positive_int("stages", stages)
    require_positive_int("micro_batches", micro_batches)


def stage_actions(schedule: list[Action], stage: int) -> list[Action]:
    """The program of one stage, in order."""
    return [a for a in schedule if a.stage == stage]


def validate(schedule: list[Action], stages: int, micro_batches: int) -> None:
    """Raise ConfigError naming the first problem: a send without its receive (or the reverse),
    a micro-batch computed twice, missing or out of order, or an order that deadlocks."""
    _check_matching(schedule, stages)
    training = any(a.kind == BACKWARD for a in schedule)
    for s in range(stages):
        _check_program(stage_actions(schedule, s), s, stages, micro_batches, training)
    simulate(schedule, stages)


def _check_matching(schedule: list[Action], stages: int) -> None:
    counts = Counter(schedule)
    for action in schedule:
        if action.kind not in (*COMPUTE, *SENDS, *RECEIVES):
            raise ConfigError(f"unknown action {action.kind!r} in {action}")
        if not 0 <= action.stage < stages:
            raise ConfigError(f"{action} names stage {action.stage}; stages are 0..{stages - 1}")
        if counts[action] > 1:
            raise ConfigError(f"{action} appears {counts[action]} times")
        partner = _partner(action)
        if partner is not None and not (0 <= partner.stage < stages and counts[partner]):
            raise ConfigError(f"{action} has no matching {partner.kind} on stage {partner.stage}")


def _partner(action: Action) -> Action | None:
    """The receive a send is matched with, or the send a receive waits for."""
    kind, step = SENDS.get(action.kind) or RECEIVES.get(action.kind) or (None, 0)
    return None if kind is None else Action(kind, action.micro_batch, action.stage + step)


def _check_program(program: list[Action], s: int, stages: int, micro_batches: int,
                   training: bool) -> None:
    """Each micro-batch: receive, forward, send; then (training) receive, backward, send."""
    expected = [a for k in range(micro_batches) for a in _forward(k, s, stages)]
    if training:
        expected += [a for k in range(micro_batches) for a in _backward(k, s, stages)]
    if sorted(program) != sorted(expected):
        missing = sorted(set(expected) - set(program))
        extra = sorted(set(program) - set(expected))
        raise ConfigError(f"stage {s} program is wrong: missing {missing[:3]}, unexpected {extra[:3]}")
    position = {a: i for i, a in enumerate(program)}
    for k in range(micro_batches):
        steps = _forward(k, s, stages) + (_backward(k, s, stages) if training else [])
        for before, after in zip(steps, steps[1:]):
            if position[before] > position[after]:
                raise ConfigError(f"stage {s} runs {after} before {before}")


def simulate(schedule: list[Action], stages: int, forward_cost: float = 1.0,
             backward_cost: float = 2.0, transfer_cost: float = 0.0) -> dict[str, float]:
    """Replay the schedule (non-blocking sends, blocking receives) with the given costs.

    Returns the makespan and the bubble: the mean over stages of idle time / makespan.
    Raises ConfigError when no stage can move (a deadlock).
    """
    programs = [stage_actions(schedule, s) for s in range(stages)]
    cursor, clock, busy = [0] * stages, [0.0] * stages, [0.0] * stages
    posted: dict[Action, float] = {}
    while any(cursor[s] < len(programs[s]) for s in range(stages)):
        moved = False
        for s in range(stages):
            while cursor[s] < len(programs[s]):
                action = programs[s][cursor[s]]
                if action.kind in RECEIVES:
                    sent = posted.get(_partner(action))
                    if sent is None:
                        break
                    clock[s] = max(clock[s], sent + transfer_cost)
                elif action.kind in SENDS:
                    posted[action] = clock[s]
                else:
                    cost = forward_cost if action.kind == FORWARD else backward_cost
                    clock[s] += cost
                    busy[s] += cost
                cursor[s] += 1
                moved = True
        if not moved:
            stuck = [programs[s][cursor[s]] for s in range(stages) if cursor[s] < len(programs[s])]
            raise ConfigError(f"the schedule deadlocks: every unfinished stage waits on a receive "
                              f"whose send never comes first: {stuck}")
    makespan = max(clock)
    bubble = sum(1 - b / makespan for b in busy) / stages if makespan else 0.0
    return {"makespan": makespan, "bubble": bubble}


def peak_in_flight(schedule: list[Action], stage: int) -> int:
    """Most micro-batches whose forward ran but whose backward has not, on one stage: the
    number of activation sets that stage must keep."""
    live = peak = 0
    for action in stage_actions(schedule, stage):
        live += {FORWARD: 1, BACKWARD: -1}.get(action.kind, 0)
        peak = max(peak, live)
    return peak
