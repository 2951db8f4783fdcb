"""The strategy registry: one module per strategy feeds the config, TOML, the CLI and its help;
options are checked once, in their dataclass, and errors name options (the CLI names flags)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from launch import ENV

from mpinn import registry
from mpinn.cli import main
from mpinn.config import TrainConfig, make_config
from mpinn.errors import ConfigError, require_positive_int
from mpinn.registry.async_ps import AsyncOptions
from mpinn.registry.data import DataOptions
from mpinn.registry.local_sgd import LocalSGDOptions
from mpinn.registry.model_parallel import ModelParallelOptions
from mpinn.registry.zero import ZeroOptions

TOY = '''
from dataclasses import dataclass

from mpinn.errors import require_positive_int
from mpinn.registry import Options, option, register


@dataclass(frozen=True)
class ToyOptions(Options):
    toy_rounds: int = option(3, "toy: rounds per step (default 3)", check=require_positive_int,
                             old=("toy_turns",))


register("toy", ToyOptions, "toy_impl:build", "data parallelism that says how it was built")
'''

TOY_IMPL = '''
from mpinn.parallel import DataParallel


def build(comm, options):
    print(f"toy built with {options.toy_rounds} rounds", flush=True)
    return DataParallel(comm)
'''

DRIVER = '''
import sys

import mpinn.registry

mpinn.registry.__path__.append(sys.argv[1])  # the folder holding toy.py: as if in mpinn/registry/
from mpinn.cli import main

sys.exit(main(sys.argv[2:]))
'''


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Runs the CLI with one more module in the registry's folder (toy.py) and its
    implementation (toy_impl.py) importable."""
    folder = tmp_path_factory.mktemp("toy")
    (folder / "strategies").mkdir()
    (folder / "strategies" / "toy.py").write_text(TOY)
    (folder / "toy_impl.py").write_text(TOY_IMPL)
    (folder / "driver.py").write_text(DRIVER)

    def run(*args):
        env = {**ENV, "PYTHONPATH": str(folder)}
        return subprocess.run([sys.executable, str(folder / "driver.py"), str(folder / "strategies"),
                               *map(str, args)],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return run


def test_a_new_strategy_is_one_module_seen_by_the_cli_help_config_and_training(toy):
    help_text = " ".join(toy("train", "--help").stdout.split())
    assert "toy: data parallelism that says how it was built" in help_text
    assert "--toy-rounds TOY_ROUNDS toy: rounds per step (default 3)" in help_text
    assert "--strategy {data,async,grid,local-sgd,pipeline,tensor,toy,zero}" in help_text
    run = toy("train", "--strategy", "toy", "--toy-rounds", 5, "--dataset", "xor", "--epochs", 1,
              "--verbose", 0)
    assert run.returncode == 0, run.stderr
    assert "toy built with 5 rounds" in run.stdout and "toy parallel over 1 rank(s)" in run.stdout


def test_a_new_strategys_options_are_checked_and_named_as_flags_or_keys(toy, tmp_path):
    run = toy("train", "--strategy", "toy", "--toy-rounds", 0)
    assert run.returncode == 2 and "mpinn: error: --toy-rounds must be a positive integer, got 0" in run.stderr
    config = tmp_path / "toy.toml"
    config.write_text('strategy = "toy"\ntoy_rounds = 1.5\n')
    run = toy("train", "--config", config)
    assert run.returncode == 2 and "config key 'toy_rounds' must be an integer, got 1.5" in run.stderr


def test_a_renamed_option_keeps_its_old_flag_and_key_with_a_notice(toy, tmp_path):
    run = toy("train", "--strategy", "toy", "--toy-turns", 2, "--dataset", "xor", "--epochs", 1,
              "--verbose", 0)
    assert run.returncode == 0, run.stderr
    assert "toy built with 2 rounds" in run.stdout
    assert run.stderr.count("mpinn: notice: --toy-turns is now --toy-rounds") == 1
    assert "--toy-turns" not in toy("train", "--help").stdout  # the old spelling is not advertised
    config = tmp_path / "old.toml"
    config.write_text('strategy = "toy"\ntoy_turns = 4\ndataset = "xor"\nepochs = 1\nverbose = 0\n')
    run = toy("train", "--config", config)
    assert run.returncode == 0, run.stderr
    assert "toy built with 4 rounds" in run.stdout
    assert "mpinn: notice: config key 'toy_turns' is now 'toy_rounds'" in run.stderr


def test_the_registry_names_every_strategy_and_the_planned_layouts():
    assert registry.names() == ("data", "async", "grid", "local-sgd", "pipeline", "tensor", "zero")
    assert registry.names(planned=True) == ("data", "grid", "pipeline", "tensor", "zero")
    assert registry.takes("deterministic") == ("data", "grid", "pipeline", "tensor", "zero")
    with pytest.raises(ConfigError, match="unknown strategy 'sync'; choose one of: async, data"):
        registry.get("sync")


def test_the_registrys_names_are_what_the_planner_and_the_schedules_use():
    from mpinn.layout.schedule import SCHEDULES
    from mpinn.plan.planner import candidate_layouts
    from mpinn.plan.workload import ModelSpec
    from mpinn.registry.model_parallel import SCHEDULES as SCHEDULE_NAMES

    layouts = candidate_layouts(ModelSpec((16, 8, 8, 8, 8, 4)), 64, 4)
    assert {layout.strategy for layout in layouts} == set(registry.names(planned=True))
    assert set(SCHEDULE_NAMES) == set(SCHEDULES)


@pytest.fixture
def scratch_registry(monkeypatch):
    registry.entries()
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_FIELDS", dict(registry._FIELDS))


def test_registering_a_name_twice_or_an_option_twice_differently_is_refused(scratch_registry):
    with pytest.raises(ConfigError, match="strategy 'data' is registered twice"):
        registry.register("data", DataOptions, "m:f", "again")
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Clash(registry.Options):
        bucket_mb: float = registry.option(8.0, "another bucket size")

    with pytest.raises(ConfigError, match="declares option 'bucket_mb' again"):
        registry.register("clash", Clash, "m:f", "a clash")
    with pytest.raises(ConfigError, match="builder must read 'module:function'"):
        registry.register("nowhere", DataOptions, "builder", "no module")


@pytest.mark.parametrize("make, message", [
    (lambda: DataOptions(group_size=0), "group_size must be a positive integer, got 0"),
    (lambda: DataOptions(bucket_mb=float("inf")), "bucket_mb must be a positive finite number, got inf"),
    (lambda: ZeroOptions(zero_stage=3), "zero_stage must be 1 or 2, got 3"),
    (lambda: ZeroOptions(zero_stage=True), "zero_stage must be 1 or 2, got True"),
    (lambda: AsyncOptions(staleness=-1), "staleness must be >= 0 steps"),
    (lambda: AsyncOptions(staleness=0.5), "staleness must be >= 0 steps, a whole number"),
    (lambda: AsyncOptions(servers=0), "servers must be a positive integer, got 0"),
    (lambda: LocalSGDOptions(sync_every=1.5), "sync_every must be a positive integer, got 1.5"),
    (lambda: ModelParallelOptions(micro_batches=True), "micro_batches must be a positive integer, got True"),
    (lambda: ModelParallelOptions(stages=0), "stages must be a positive integer, got 0"),
    (lambda: ModelParallelOptions(schedule="zigzag"), "unknown schedule 'zigzag'; choose one of: 1f1b, gpipe"),
])
def test_each_option_is_checked_once_in_its_dataclass(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make()


@pytest.mark.parametrize("value", [True, False, 1.5, 1.0, "3", None, 0, -2])
def test_the_positive_integer_check_rejects_bools_non_integers_and_values_below_1(value):
    with pytest.raises(ConfigError, match=f"epochs must be a positive integer, got {value!r}"):
        require_positive_int("epochs", value)


def test_the_positive_integer_check_takes_numpy_integers():
    assert require_positive_int("epochs", np.int64(3)) == 3 and require_positive_int("n", 1) == 1


@pytest.mark.parametrize("key, value", [("epochs", True), ("batch_size", 2.5), ("threads", 0),
                                        ("micro_batches", False), ("sync_every", -1)])
def test_the_config_uses_it_for_every_count(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be a positive integer, got {value!r}"):
        TrainConfig(**{key: value})


def _counts():
    from mpinn.data import make_regression
    from mpinn.layout import make_schedule, parse_grid
    from mpinn.nn import Dense
    from mpinn.optim import SGD, StepLR
    from mpinn.train.checkpointing import Checkpointing

    return [("Dense units", lambda v: Dense(v)), ("step_size", lambda v: StepLR(SGD(lr=1.0), step_size=v)),
            ("keep_checkpoints", lambda v: Checkpointing("ck", keep=v)),
            ("micro_batches", lambda v: make_schedule("1f1b", 2, v)),
            ("grid axis data", lambda v: parse_grid(f"data={v}")),
            ("n_samples", lambda v: make_regression(n_samples=v)),
            ("micro_batches", lambda v: ModelParallelOptions(micro_batches=v))]


@pytest.mark.parametrize("value", [True, 1.5, 0])
def test_every_count_in_the_package_uses_the_shared_check(value):
    for name, make in _counts():
        if name == "grid axis data" and type(value) is not int:
            continue  # a grid is text: "data=1.5" is not a whole number there
        with pytest.raises(ConfigError, match=f"{name} must be a positive integer, got {value!r}"):
            make(value)


def test_errors_from_a_part_name_the_option_and_the_cli_names_the_flag(capsys):
    from mpinn.parallel.model_parallel import grid_for

    with pytest.raises(ConfigError, match="option strategy grid needs option grid"):
        grid_for("grid", 2)
    assert main(["train", "--strategy", "grid", "--epochs", "1"]) == 2
    assert "mpinn: error: --strategy grid needs --grid, e.g. --grid data=2,pipeline=2" in capsys.readouterr().err


def test_the_config_key_names_the_option_without_flags():
    with pytest.raises(ConfigError) as error:
        make_config({"deterministic": True, "strategy": "async"})
    assert str(error.value).startswith("option deterministic covers option strategy data, grid, pipeline, "
                                       "tensor and zero, not async")
    assert "--" not in str(error.value)


def test_importing_the_registry_and_the_cli_loads_neither_numpy_nor_mpi():
    code = ("import sys, mpinn.registry, mpinn.cli, mpinn.config; mpinn.registry.entries(); "
            "sys.exit(('mpi4py' in sys.modules) + 2 * ('numpy' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=60).returncode == 0
