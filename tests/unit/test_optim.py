"""Optimizers against hand-computed steps and torch.optim's documented algorithms."""

import math

import numpy as np
import pytest

from mpinn import ConfigError
from mpinn.optim import (SGD, Adam, AdamW, CosineAnnealingLR, LinearWarmup, RMSprop, StepLR,
                         get_optimizer)

RNG = np.random.default_rng(7)


def run(opt, params, grad_seq):
    params = np.array(params, dtype=np.float64)
    for g in grad_seq:
        opt.step(params, np.array(g, dtype=np.float64))
    return params


# ---- literal numbers, worked out by hand -------------------------------------------------
def test_sgd_plain_step():
    np.testing.assert_allclose(run(SGD(lr=0.1), [1.0, 2.0], [[0.5, -1.0]]), [0.95, 2.1])


@pytest.mark.parametrize("settings, total_factor", [
    ({"momentum": 0.9}, 1 + 1.9),                       # buf: g, then 0.9 g + g
    ({"momentum": 0.9, "dampening": 0.5}, 1 + 1.4),     # buf: g, then 0.9 g + 0.5 g
    ({"momentum": 0.9, "nesterov": True}, 1.9 + 2.71),  # g + 0.9 buf with buf = g, 1.9 g
])
def test_sgd_momentum_two_equal_gradients(settings, total_factor):
    g = np.array([0.5, -2.0])
    out = run(SGD(lr=0.1, **settings), [0.0, 0.0], [g, g])
    np.testing.assert_allclose(out, -0.1 * total_factor * g)


def test_sgd_weight_decay_adds_l2_gradient():
    np.testing.assert_allclose(run(SGD(lr=0.5, weight_decay=0.1), [2.0], [[1.0]]), [2.0 - 0.5 * 1.2])


def test_adam_first_steps_by_hand():
    # step 1: m = 0.1, v = 0.001; corrected m = 1, v = 1: p -= lr * 1 / (1 + eps)
    # step 2 (g = 3): m = 0.39, v = 0.009999; corrected m = 0.39/0.19, v = 0.009999/0.001999
    step2 = (0.39 / 0.19) / (math.sqrt(0.009999 / 0.001999) + 1e-8)
    expected = 1.0 - 0.01 * (1 / (1 + 1e-8)) - 0.01 * step2
    np.testing.assert_allclose(run(Adam(lr=0.01), [1.0], [[1.0], [3.0]]), [expected], rtol=1e-12)


def test_adamw_decays_weights_before_the_adam_step():
    expected = 1.0 * (1 - 0.01 * 0.5) - 0.01 / (1 + 1e-8)
    np.testing.assert_allclose(run(AdamW(lr=0.01, weight_decay=0.5), [1.0], [[2.0]]), [expected])


def test_amsgrad_keeps_the_largest_second_moment():
    # g = 3 then 0: v falls from 0.009 to 0.008991, AMSGrad divides by sqrt of the 0.009 one
    m2, v_max = 0.9 * 0.3, 0.009
    step2 = (m2 / 0.19) / (math.sqrt(v_max / 0.001999) + 1e-8)
    out = run(Adam(lr=0.01, amsgrad=True), [0.0], [[3.0], [0.0]])
    np.testing.assert_allclose(out, [-0.01 * 3 / (3 + 1e-8) - 0.01 * step2], rtol=1e-12)


def test_rmsprop_first_step_by_hand():
    # square_avg = 0.01 g^2: p -= lr * g / (0.1 |g| + eps) = about 10 lr sign(g)
    out = run(RMSprop(lr=0.01), [0.0, 0.0], [[2.0, -0.5]])
    np.testing.assert_allclose(out, [-0.01 * 2 / (0.2 + 1e-8), 0.01 * 0.5 / (0.05 + 1e-8)])


# ---- torch.optim's documented algorithms, written out element by element ----------------
def reference_sgd(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    p, buf = list(p), None
    for t, g in enumerate(grads, start=1):
        g = [gi + weight_decay * pi for gi, pi in zip(g, p)]
        if momentum:
            buf = list(g) if t == 1 else [momentum * b + (1 - dampening) * gi for b, gi in zip(buf, g)]
            g = [gi + momentum * b for gi, b in zip(g, buf)] if nesterov else buf
        p = [pi - lr * gi for pi, gi in zip(p, g)]
    return p


def reference_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                   decoupled=False):
    b1, b2 = betas
    p, m, v, vmax = list(p), [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        for i in range(len(p)):
            gi = g[i]
            if decoupled:
                p[i] *= 1 - lr * weight_decay
            else:
                gi += weight_decay * p[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            vmax[i] = max(vmax[i], v[i])
            vhat = (vmax[i] if amsgrad else v[i]) / (1 - b2 ** t)
            p[i] -= lr * (m[i] / (1 - b1 ** t)) / (math.sqrt(vhat) + eps)
    return p


def reference_rmsprop(p, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                      centered=False):
    p, sq, ga, buf = list(p), [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
    for g in grads:
        for i in range(len(p)):
            gi = g[i] + weight_decay * p[i]
            sq[i] = alpha * sq[i] + (1 - alpha) * gi * gi
            ga[i] = alpha * ga[i] + (1 - alpha) * gi
            denom = math.sqrt(sq[i] - ga[i] ** 2 if centered else sq[i]) + eps
            if momentum:
                buf[i] = momentum * buf[i] + gi / denom
                p[i] -= lr * buf[i]
            else:
                p[i] -= lr * gi / denom
    return p


CASES = [
    (SGD, reference_sgd, {"lr": 0.05}),
    (SGD, reference_sgd, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    (SGD, reference_sgd, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    (Adam, reference_adam, {"lr": 0.01}),
    (Adam, reference_adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
                            "amsgrad": True}),
    (AdamW, lambda *a, **k: reference_adam(*a, decoupled=True, **k), {"lr": 0.01}),
    (AdamW, lambda *a, **k: reference_adam(*a, decoupled=True, **k),
     {"lr": 0.01, "weight_decay": 0.2, "amsgrad": True}),
    (RMSprop, reference_rmsprop, {"lr": 0.01}),
    (RMSprop, reference_rmsprop, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True,
                                  "weight_decay": 0.05}),
]


@pytest.mark.parametrize("cls, reference, settings", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_matches_documented_algorithm_over_several_steps(cls, reference, settings):
    p0 = RNG.normal(size=6)
    grads = RNG.normal(size=(5, 6))
    out = run(cls(**settings), p0, grads)
    expected = reference(list(p0), grads.tolist(), **{**cls.defaults, **settings})
    np.testing.assert_allclose(out, expected, rtol=1e-10)


@pytest.mark.parametrize("cls, reference, settings", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_matches_torch_when_installed(cls, reference, settings):
    torch = pytest.importorskip("torch")
    p0, grads = RNG.normal(size=6), RNG.normal(size=(5, 6))
    tensor = torch.tensor(p0, requires_grad=True)
    torch_opt = getattr(torch.optim, cls.__name__)([tensor], **settings)
    for g in grads:
        tensor.grad = torch.tensor(g)
        torch_opt.step()
    np.testing.assert_allclose(run(cls(**settings), p0, grads), tensor.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("cls, _, settings", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_stepping_two_slices_equals_stepping_the_whole(cls, _, settings):
    params, grads = RNG.normal(size=11).astype(np.float32), RNG.normal(size=(3, 11)).astype(np.float32)
    whole, parts = params.copy(), params.copy()
    opt, first, second = cls(**settings), cls(**settings), cls(**settings)
    for g in grads:
        opt.step(whole, g)
        first.step(parts[:4], g[:4])
        second.step(parts[4:], g[4:])
    np.testing.assert_array_equal(parts, whole)


def test_step_is_in_place_keeps_dtype_and_leaves_grads_alone():
    params = np.ones(5, np.float32)
    grads = np.full(5, 0.5, np.float32)
    view = params[1:4]
    Adam(weight_decay=0.1).step(view, grads[1:4])
    assert params.dtype == np.float32 and params[0] == 1 and params[4] == 1 and np.all(view < 1)
    np.testing.assert_array_equal(grads, 0.5)


def test_state_dict_round_trip_continues_the_same_trajectory():
    grads = RNG.normal(size=(6, 4))
    straight = run(Adam(lr=0.01, amsgrad=True), np.zeros(4), grads)
    first = Adam(lr=0.01, amsgrad=True)
    params = run(first, np.zeros(4), grads[:3])
    state = first.state_dict()
    second = Adam()
    second.load_state_dict(state)
    assert second.lr == 0.01 and second.amsgrad and second.steps == 3
    for g in grads[3:]:
        second.step(params, g)
    np.testing.assert_array_equal(params, straight)


def test_state_for_another_size_or_type_is_refused():
    opt = SGD(momentum=0.9)
    opt.step(np.zeros(3), np.ones(3))
    with pytest.raises(ConfigError, match="state for 3 parameters but was given 4"):
        opt.step(np.zeros(4), np.ones(4))
    with pytest.raises(ConfigError, match="state is from 'SGD', not 'Adam'"):
        Adam().load_state_dict(opt.state_dict())


def test_defaults_follow_torch():
    assert SGD().lr == 1e-3 and Adam().betas == (0.9, 0.999) and Adam().eps == 1e-8
    assert AdamW().weight_decay == 1e-2 and RMSprop().lr == 1e-2 and RMSprop().alpha == 0.99


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(lr=0), "lr must be a positive finite number"),
    (lambda: Adam(lr=float("inf")), "lr must be a positive finite number, got inf"),
    (lambda: AdamW(weight_decay=float("nan")), "weight_decay must be a finite number >= 0, got nan"),
    (lambda: SGD(lr=0.1, nesterov=True), "nesterov needs momentum > 0"),
    (lambda: Adam(betas=(0.9, 1.0)), "betas\\[1\\] must lie in"),
    (lambda: Adam(weight_decay=-1), "weight_decay must be a finite number >= 0"),
    (lambda: Adam(momentum=0.9), "Adam has no setting 'momentum'; its settings are: lr, betas"),
    (lambda: get_optimizer("adagrad"), "unknown optimizer 'adagrad'; choose one of: adam, adamw"),
    (lambda: SGD().step(np.zeros(3), np.zeros(2)), "differ in shape"),
])
def test_bad_settings_name_the_problem(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_get_optimizer_by_name_with_settings():
    opt = get_optimizer("SGD", lr=0.2, momentum=0.5)
    assert isinstance(opt, SGD) and opt.lr == 0.2 and opt.momentum == 0.5
    same = Adam()
    assert get_optimizer(same) is same


# ---- schedules ---------------------------------------------------------------------------
def lrs(schedule, count):
    return [schedule.optimizer.lr] + [schedule.step() for _ in range(count)]


def test_step_lr():
    np.testing.assert_allclose(lrs(StepLR(SGD(lr=1.0), step_size=2, gamma=0.5), 5),
                               [1, 1, 0.5, 0.5, 0.25, 0.25])


def test_cosine_annealing_reaches_eta_min_and_holds():
    values = lrs(CosineAnnealingLR(SGD(lr=1.0), t_max=4, eta_min=0.1), 6)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * min(t, 4) / 4)) / 2 for t in range(7)]
    np.testing.assert_allclose(values, expected)
    assert values[2] == pytest.approx(0.55) and values[-1] == pytest.approx(0.1)


def test_linear_warmup_then_hold():
    np.testing.assert_allclose(lrs(LinearWarmup(SGD(lr=1.0), warmup=4, start_factor=0.2), 5),
                               [0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_schedule_state_round_trip():
    schedule = StepLR(SGD(lr=1.0), step_size=1, gamma=0.5)
    lrs(schedule, 3)
    restored = StepLR(SGD(lr=1.0), step_size=1, gamma=0.5)
    restored.load_state_dict(schedule.state_dict())
    assert restored.optimizer.lr == 0.125 and restored.step() == 0.0625
