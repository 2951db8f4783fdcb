"""Keras' optimizers: steps against Keras' documented formulas written out element by element,
and against ``keras`` itself when it is installed with a backend."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from mpinn import optim
from mpinn.keras import optimizers

P0 = np.array([1.0, -2.0, 3.0, 0.5], np.float64)
GRADS = [np.array(g, np.float64) for g in ([0.1, 0.2, -0.3, 0.0], [0.5, -0.1, 0.2, 1.0],
                                           [-0.4, 0.3, 0.1, -0.2])]


def keras_sgd(p, grads, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
    p, m = list(p), [0.0] * len(p)
    for g in grads:
        for i, gi in enumerate(g):
            if weight_decay:
                p[i] = p[i] - p[i] * weight_decay * learning_rate
            if momentum:
                m[i] = m[i] * momentum - gi * learning_rate
                p[i] += m[i] * momentum - gi * learning_rate if nesterov else m[i]
            else:
                p[i] -= gi * learning_rate
    return p


def keras_rmsprop(p, grads, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                  centered=False, weight_decay=None):
    p, v, avg, mom = list(p), [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
    for g in grads:
        for i, gi in enumerate(g):
            if weight_decay:
                p[i] = p[i] - p[i] * weight_decay * learning_rate
            v[i] = rho * v[i] + (1 - rho) * gi * gi
            denominator = v[i] + epsilon
            if centered:
                avg[i] = rho * avg[i] + (1 - rho) * gi
                denominator = v[i] - avg[i] ** 2 + epsilon
            increment = learning_rate * gi / math.sqrt(denominator)
            if momentum:
                mom[i] = momentum * mom[i] + increment
                p[i] -= mom[i]
            else:
                p[i] -= increment
    return p


def keras_adam(p, grads, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
               amsgrad=False, weight_decay=None):
    p, m, v, v_hat = list(p), [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        alpha = learning_rate * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for i, gi in enumerate(g):
            if weight_decay:
                p[i] = p[i] - p[i] * weight_decay * learning_rate
            m[i] += (gi - m[i]) * (1 - beta_1)
            v[i] += (gi * gi - v[i]) * (1 - beta_2)
            v_hat[i] = max(v_hat[i], v[i])
            root = math.sqrt(v_hat[i] if amsgrad else v[i])
            p[i] -= alpha * m[i] / (root + epsilon)  # epsilon on the uncorrected root
    return p


def keras_adamw(p, grads, weight_decay=0.004, **settings):
    return keras_adam(p, grads, weight_decay=weight_decay, **settings)


CASES = [
    ("SGD", keras_sgd, {}),
    ("SGD", keras_sgd, {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", keras_sgd, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("RMSprop", keras_rmsprop, {}),
    ("RMSprop", keras_rmsprop, {"learning_rate": 0.01, "momentum": 0.5, "centered": True,
                                "weight_decay": 0.05}),
    ("Adam", keras_adam, {}),
    ("Adam", keras_adam, {"learning_rate": 0.1, "weight_decay": 0.01, "amsgrad": True}),
    ("Adam", keras_adam, {"learning_rate": 0.05, "epsilon": 0.5}),  # epsilon hat is visible
    ("AdamW", keras_adamw, {}),
    ("AdamW", keras_adamw, {"learning_rate": 0.1, "weight_decay": 0.2}),
]
IDS = [f"{name}-{'-'.join(settings) or 'defaults'}" for name, _, settings in CASES]


def mpinn_steps(name, settings, dtype=np.float64, pieces=1):
    """Three steps of mpinn.keras' optimizer; with ``pieces`` > 1, on slices of the buffer, each
    with its own optimizer (as ZeRO shards it)."""
    params = P0.astype(dtype)
    bounds = np.linspace(0, params.size, pieces + 1).astype(int)
    opts = [getattr(optimizers, name)(**settings) for _ in range(pieces)]
    for g in GRADS:
        for opt, lo, hi in zip(opts, bounds[:-1], bounds[1:]):
            opt.step(params[lo:hi], g.astype(dtype)[lo:hi])
    return params


@pytest.mark.parametrize("name, formula, settings", CASES, ids=IDS)
def test_steps_follow_keras_formulas(name, formula, settings):
    np.testing.assert_allclose(mpinn_steps(name, settings), formula(P0, GRADS, **settings),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, formula, settings", CASES[:3] + CASES[5:7], ids=IDS[:3] + IDS[5:7])
def test_stepping_slices_equals_stepping_the_whole(name, formula, settings):
    np.testing.assert_array_equal(mpinn_steps(name, settings, pieces=3), mpinn_steps(name, settings))


def test_keras_defaults_and_names():
    adam = optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.weight_decay) == \
        (0.001, 0.9, 0.999, 1e-7, None)
    assert optimizers.AdamW().weight_decay == 0.004
    assert optimizers.SGD().learning_rate == 0.01
    rms = optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.epsilon) == (0.001, 0.9, 1e-7)
    assert isinstance(adam, optim.Adam) and isinstance(optimizers.AdamW(), optim.AdamW)


def test_learning_rate_is_lr_and_a_twin_from_hyperparameters_is_equal():
    adam = optimizers.Adam(learning_rate=0.5)
    adam.learning_rate = 0.25
    assert adam.lr == 0.25
    adam.lr = 0.125
    assert adam.learning_rate == 0.125
    twin = type(adam)(**adam.hyperparameters())
    assert twin.hyperparameters() == adam.hyperparameters()
    assert optimizers.SGD(lr=0.3).learning_rate == 0.3  # older Keras' name


def test_adam_by_name_is_keras_adam_here_and_torch_adam_in_the_low_level_api():
    assert type(optimizers.get("adam")) is optimizers.Adam
    assert type(optim.get_optimizer("adam")) is optim.Adam
    assert optimizers.get("adam").epsilon == 1e-7 and optim.get_optimizer("adam").eps == 1e-8


@pytest.mark.parametrize("make, message", [
    (lambda: optimizers.Adam(learning_rate=0), "learning_rate must be a positive number"),
    (lambda: optimizers.Adam(beta_1=1.0), r"beta_1 must lie in \[0.0, 1.0\)"),
    (lambda: optimizers.SGD(weight_decay=-1), "weight_decay must be None or >= 0"),
    (lambda: optimizers.AdamW(weight_decay=None), "AdamW: weight_decay must be a number"),
    (lambda: optimizers.get("nadam"), "optimizer 'nadam' is not supported by mpinn; "
                                      "mpinn.keras.optimizers has SGD, RMSprop, Adam and AdamW"),
    (lambda: optimizers.Adagrad, "tf.keras.optimizers.Adagrad is not supported"),
])
def test_bad_settings_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _keras_backend() -> str | None:
    if importlib.util.find_spec("keras") is None:
        return None
    return next((b for b in ("jax", "torch", "tensorflow") if importlib.util.find_spec(b)), None)


KERAS_SCRIPT = """
import json, sys
import numpy as np
import keras
cases, p0, grads = json.loads(sys.stdin.read())
out = []
for name, settings in cases:
    opt = getattr(keras.optimizers, name)(**settings)
    v = keras.Variable(np.array(p0, "float32"))
    for g in grads:
        opt.apply_gradients([(np.array(g, "float32"), v)])
    out.append(np.asarray(v).astype(float).tolist())
print(json.dumps(out))
"""


@pytest.mark.skipif(_keras_backend() is None, reason="keras with a backend (jax, torch or "
                    "tensorflow) is not installed")
def test_steps_equal_keras_itself():
    cases = [(name, settings) for name, _, settings in CASES]
    payload = json.dumps([cases, P0.tolist(), [g.tolist() for g in GRADS]])
    env = {**os.environ, "KERAS_BACKEND": _keras_backend()}
    done = subprocess.run([sys.executable, "-c", KERAS_SCRIPT], input=payload, env=env,
                          capture_output=True, text=True, timeout=240, check=True)
    expected = json.loads(done.stdout.strip().splitlines()[-1])
    for (name, settings), want in zip(cases, expected):
        got = mpinn_steps(name, settings, dtype=np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7, err_msg=f"{name} {settings}")


def test_keras_clipping_thresholds_are_mpinns():
    adam = optimizers.Adam(global_clipnorm=1.0)
    assert adam.global_clipnorm == 1.0 and adam.clipnorm is None
    twin = adam.twin()
    adam.learning_rate = 0.5
    twin.follow()
    assert twin.lr == 0.5 and twin.global_clipnorm == 1.0
    with pytest.raises(ValueError, match="only one of clipnorm, global_clipnorm and clipvalue"):
        optimizers.SGD(clipnorm=1.0, clipvalue=0.5)


def test_settings_that_differ_from_keras_defaults_count_as_given():
    assert optimizers.Adam(learning_rate=0.01, beta_1=0.9).explicit == {"lr"}
    assert optimizers.AdamW(weight_decay=0.1).explicit == {"weight_decay"}
