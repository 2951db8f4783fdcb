"""One source of hyperparameters (twins), resume rules, clipping math and schedules, in one process."""

import math

import numpy as np
import pytest

from mpinn import ConfigError
from mpinn.optim import SGD, Adam, CosineAnnealingLR, StepLR, WarmupCosine
from mpinn.optim.clipping import TensorRuns, clip_factors, exact_grid
from mpinn.train.resume import check_fixed_settings, resume_notice, run_changes
from mpinn.optim.update import GradientClip

RNG = np.random.default_rng(3)


# ---- twins -------------------------------------------------------------------------------
def test_a_twin_keeps_its_own_state_and_takes_the_sources_settings_at_each_step():
    source = SGD(lr=0.1, momentum=0.9)
    twin = source.twin()
    params = np.zeros(2)
    twin.step(params, np.ones(2))
    source.lr = 0.01
    twin.step(params, np.ones(2))  # buf = 1.9: p -= 0.01 * 1.9
    np.testing.assert_allclose(params, -(0.1 + 0.019))
    assert twin.lr == 0.01 and source.steps == 0 and not source.state
    np.testing.assert_allclose(twin.state["momentum_buffer"], 1.9)


def test_a_twins_state_dict_carries_the_sources_settings_and_schedule():
    source = Adam(lr=0.5)
    schedule = StepLR(source, 1, 0.5)
    source.schedule = schedule
    twin = source.twin()
    twin.step(np.zeros(3), np.ones(3))
    schedule.step()
    saved = twin.state_dict()
    assert saved["hyper"]["lr"] == 0.25 and saved["steps"] == 1
    assert saved["schedule"] == {"type": "StepLR", "count": 1, "base_lr": 0.5}


def test_loading_a_twin_restores_state_only():
    trained = Adam(lr=0.5)
    trained.step(np.zeros(3), np.ones(3))
    source = Adam()
    twin = source.twin()
    twin.load_state_dict(trained.state_dict())
    assert twin.steps == 1 and source.lr == 1e-3 and "exp_avg" in twin.state


# ---- resume: explicit settings win --------------------------------------------------------
def saved_sgd(**settings):
    optimizer = SGD(**settings)
    optimizer.step(np.zeros(2), np.ones(2))
    return optimizer.state_dict()


def test_settings_not_given_come_from_the_checkpoint_given_ones_stay():
    state = saved_sgd(lr=0.1, momentum=0.5, weight_decay=0.01)
    resumed = SGD(lr=0.5)
    resumed.load_state_dict(state)
    assert resumed.lr == 0.5 and resumed.momentum == 0.5 and resumed.weight_decay == 0.01
    assert resumed.overridden == {"lr": (0.1, 0.5)} and resumed.steps == 1


def test_momentum_turned_on_at_resume_starts_a_zero_buffer():
    resumed = SGD(lr=0.1, momentum=0.9)
    resumed.load_state_dict(saved_sgd(lr=0.1))
    params = np.zeros(2)
    resumed.step(params, np.ones(2))
    np.testing.assert_allclose(params, -0.1)
    assert resumed.overridden == {"momentum": (0.0, 0.9)}


def test_a_given_clipping_threshold_replaces_the_saved_one_of_another_kind():
    resumed = SGD(lr=0.1, clipvalue=0.5)
    resumed.load_settings(saved_sgd(lr=0.1, global_clipnorm=1.0))
    assert resumed.clipvalue == 0.5 and resumed.global_clipnorm is None
    kept = SGD(lr=0.1)
    kept.load_settings(saved_sgd(lr=0.1, global_clipnorm=1.0))
    assert kept.global_clipnorm == 1.0


def test_a_given_lr_replaces_the_schedules_base_and_the_position_is_restored():
    first = SGD(lr=1.0)
    first.schedule = StepLR(first, 1, 0.5)
    first.schedule.step()
    first.schedule.step()
    state = first.state_dict()
    kept = SGD()
    kept.schedule = StepLR(kept, 1, 0.5)
    kept.load_settings(state)
    assert kept.lr == 0.25 and kept.schedule.count == 2 and not kept.overridden
    given = SGD(lr=0.4)
    given.schedule = StepLR(given, 1, 0.5)
    given.load_settings(state)
    assert given.lr == pytest.approx(0.1) and given.overridden == {"lr": (1.0, 0.4)}
    with pytest.raises(ConfigError, match="schedule is StepLR, this run's is CosineAnnealingLR"):
        other = SGD()
        other.schedule = CosineAnnealingLR(other, 4)
        other.load_settings(state)


def test_fixed_settings_name_the_option_and_run_changes_list_given_ones(tmp_path):
    saved = {"hidden": [64], "seed": 0, "epochs": 4, "lr": None}
    check_fixed_settings(saved, {"hidden": (64,), "seed": 0, "epochs": 9}, tmp_path)
    with pytest.raises(ConfigError, match=r"option hidden 32 differs from 64 in checkpoint .*give option hidden 64"):
        check_fixed_settings(saved, {"hidden": (32,), "seed": 0}, tmp_path)
    with pytest.raises(ConfigError, match="option seed 1 differs from 0"):
        check_fixed_settings(saved, {"hidden": (64,), "seed": 1}, tmp_path)
    assert run_changes(saved, {"epochs": 9}, frozenset({"epochs"})) == {"epochs": (4, 9)}
    assert run_changes(saved, {"epochs": 9}, frozenset()) == {}
    notice = resume_notice({"lr": (0.001, 0.5), "epochs": (4, 9)})
    assert notice == "mpinn: settings given for this run replace the checkpoint's: lr 0.001 -> 0.5, epochs 4 -> 9"
    assert resume_notice({}) is None


# ---- clipping: Keras' formulas ---------------------------------------------------------------
def test_clip_settings_are_checked_and_at_most_one_is_set():
    assert SGD(clipnorm=1.0).clipnorm == 1.0 and Adam(clipvalue=0.5).clipvalue == 0.5
    with pytest.raises(ConfigError, match="only one of clipnorm, global_clipnorm and clipvalue"):
        SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ConfigError, match="global_clipnorm must be a positive number or None"):
        Adam(global_clipnorm=0)


def clipped(optimizer, grads, sizes):
    grads = np.array(grads, dtype=np.float64)
    GradientClip(TensorRuns.of_slice(sizes, 0, grads.size))(optimizer, grads)
    return grads


def test_clipnorm_scales_each_tensor_by_its_own_norm():
    # tensor [3, 4] has norm 5 -> [0.6, 0.8]; tensor [0.1] is under the threshold
    np.testing.assert_allclose(clipped(SGD(clipnorm=1.0), [3, 4, 0.1], [2, 1]), [0.6, 0.8, 0.1])


def test_global_clipnorm_scales_everything_by_the_whole_norm():
    np.testing.assert_allclose(clipped(SGD(global_clipnorm=2.5), [3, 4, 0], [2, 1]), [1.5, 2.0, 0])
    np.testing.assert_allclose(clipped(SGD(global_clipnorm=9.0), [3, 4, 0], [2, 1]), [3, 4, 0])


def test_clipvalue_clips_each_element():
    np.testing.assert_allclose(clipped(SGD(clipvalue=0.5), [3, -4, 0.1], [3]), [0.5, -0.5, 0.1])


def test_runs_of_slices_add_up_to_the_whole_model():
    sizes, grads = [5, 3, 7, 2], RNG.normal(size=17)
    whole = TensorRuns.of_slice(sizes, 0, 17).squares(grads)
    cuts = [0, 4, 4, 9, 17]
    parts = sum(TensorRuns.of_slice(sizes, lo, hi).squares(grads[lo:hi]) for lo, hi in zip(cuts, cuts[1:]))
    np.testing.assert_allclose(parts, whole)
    np.testing.assert_allclose(whole, [np.sum(grads[a:b] ** 2) for a, b in [(0, 5), (5, 8), (8, 15), (15, 17)]])


def test_runs_of_an_index_count_a_replicated_tensor_once():
    tensor_of = np.array([0, 0, 0, 0, 1, 1])  # W (4 elements, split in halves), b (2, replicated)
    grads = RNG.normal(size=6)
    copies = np.array([1.0, 2.0])
    halves = [np.array([0, 1, 4, 5]), np.array([2, 3, 4, 5])]
    total = sum(TensorRuns.of_index(tensor_of, index, copies).squares(grads[index]) for index in halves)
    np.testing.assert_allclose(total, [np.sum(grads[:4] ** 2), np.sum(grads[4:] ** 2)])


def test_exact_squares_do_not_depend_on_the_split():
    grads = RNG.normal(size=1000) * 10.0 ** RNG.integers(-6, 2, size=1000)
    grid = exact_grid(float(np.max(grads ** 2)), grads.size)
    runs = [TensorRuns.of_slice([1000], lo, hi) for lo, hi in [(0, 1000), (0, 333), (333, 1000)]]
    whole = runs[0].squares(grads, grid)
    split = runs[1].squares(grads[:333], grid) + runs[2].squares(grads[333:], grid)
    assert whole[0] == split[0] and whole[0] == pytest.approx(np.sum(grads ** 2), rel=1e-9)


def test_clip_factors_follow_keras():
    factors = clip_factors(SGD(clipnorm=2.0), np.array([16.0, 1.0]))
    np.testing.assert_allclose(factors, [0.5, 1.0])


# ---- schedules ----------------------------------------------------------------------------
def test_warmup_then_cosine():
    schedule = WarmupCosine(SGD(lr=1.0), warmup=2, t_max=6, eta_min=0.0, start_factor=0.5)
    values = [schedule.optimizer.lr] + [schedule.step() for _ in range(7)]
    cosine = [(1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)]
    np.testing.assert_allclose(values, [0.5, 0.75] + cosine + [0.0], atol=1e-12)


def test_a_run_length_schedule_takes_the_runs_length():
    schedule = CosineAnnealingLR(SGD(lr=1.0), None)
    schedule.span(4)
    assert schedule.t_max == 4 and [schedule.step() for _ in range(4)][-1] == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="a warm-up of 3 epochs leaves no room for the cosine in 3"):
        WarmupCosine(SGD(lr=1.0), warmup=3, t_max=None).span(3)
    with pytest.raises(ConfigError, match="per 'epoch' or per 'step'"):
        StepLR(SGD(), 1, per="batch")


# ---- resume through fit -------------------------------------------------------------------
def test_fit_resumes_with_the_given_optimizer_settings_and_epochs_and_says_so(tmp_path, capsys):
    from mpinn.data import make_classification
    from mpinn.keras import Sequential
    from mpinn.nn import Dense
    from mpinn.train import fit
    from mpinn.train.checkpointing import Checkpointing

    x, y = make_classification(n_samples=40, n_features=4, n_classes=2, seed=1)

    def run(optimizer, epochs):
        model = Sequential([Dense(6, input_dim=4, activation="relu"), Dense(2, activation="softmax")], seed=0)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        schedule = StepLR(model.optimizer, 1, 0.5)
        fit(model, x, y, epochs=epochs, batch_size=10, verbose=0, checkpoint=Checkpointing(tmp_path),
            lr_schedule=schedule)
        return model

    run(SGD(lr=0.1, momentum=0.9), 1)
    capsys.readouterr()
    resumed = run(SGD(lr=0.4), 2)  # momentum not given: the checkpoint's 0.9
    out = capsys.readouterr().out
    assert out.count("replace the checkpoint's: lr 0.1 -> 0.4, epochs 1 -> 2\n") == 1
    assert resumed.optimizer.momentum == 0.9 and resumed.optimizer.lr == pytest.approx(0.1)  # 0.4 * 0.5^2


@pytest.mark.parametrize("values, message", [
    ({"lr_schedule": "plateau", "lr_factor": 2.0}, "lr_factor must be below 1 for the plateau schedule"),
    ({"lr_schedule": "linear"}, "unknown lr_schedule 'linear'; choose one of: step, cosine"),
    ({"lr_schedule_per": "batch"}, "lr_schedule_per must be epoch or step"),
    ({"lr_patience": 0}, "lr_patience must be a positive integer"),
    ({"clip_norm": -1.0}, "clip_norm must be a positive number"),
])
def test_bad_schedule_and_clipping_settings_name_the_setting(values, message):
    from mpinn.config import make_config

    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_clip_norm_is_the_global_clipnorm_of_the_optimizer():
    from mpinn.config import make_config

    assert make_config({"clip_norm": 1.5}).optimizer_options() == {"global_clipnorm": 1.5}
