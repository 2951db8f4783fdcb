"""What ``mpinn sweep`` runs: a base configuration and the values to vary, from TOML and flags.

Stdlib only (like :mod:`mpinn.config`), so the CLI reads it before numpy loads::

    [train]               # the base: any `mpinn train` key
    epochs = 10
    [vary]                # a list of values per train key; every combination is one run
    lr = [0.001, 0.01]
    hidden = [[32], [64, 32]]
    [sweep]               # how: ranks_per_config, ensemble, output
    ranks_per_config = 2

Flags: the train flags set the base, ``--vary KEY=VALUE`` (repeated) adds a value to vary,
and ``--ranks-per-config``, ``--ensemble``, ``--output``, ``--validation-split``. Unknown
keys are rejected with the list of valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from mpinn.cli.flags import add_train_flags, typed
from mpinn.config import TrainConfig, known_keys, make_config, read_toml
from mpinn.errors import ConfigError, require_positive_int

SWEEP_OPTIONS: dict[str, Any] = {"ranks_per_config": 1, "ensemble": False, "output": "sweep.json"}
PER_RUN_OUTPUTS = ("save", "metrics", "checkpoint_dir")  # every run would write the same file
CHECKPOINTING = ("resume", "checkpoint_every", "keep_checkpoints")  # its runs write no checkpoints
NOT_TAKEN = PER_RUN_OUTPUTS + CHECKPOINTING + ("on_failure",)
NOT_VARIED = ("dataset", "threads", "validation_split") + NOT_TAKEN  # one data split and one BLAS setting for all
TABLES = ("train", "vary", "sweep")


@dataclass(frozen=True)
class SweepSpec:
    """The runs of a sweep (``configs``, one per combination of ``varied`` values) and how."""

    base: TrainConfig
    varied: dict[str, list[Any]]
    configs: tuple[TrainConfig, ...]
    ranks_per_config: int = 1
    ensemble: bool = False
    output: str = "sweep.json"

    def label(self, index: int) -> dict[str, Any]:
        """The varied settings of run ``index`` (JSON-friendly values)."""
        config = self.configs[index]
        return {key: _plain(getattr(config, key)) for key in self.varied}


def make_sweep_spec(base: dict[str, Any], varied: dict[str, list[Any]],
                    options: dict[str, Any]) -> SweepSpec:
    """Check every key and value, and build every configuration, before any run starts."""
    _reject_unknown("sweep option", options, SWEEP_OPTIONS)
    _reject_unknown("key to vary", varied, known_keys())
    for key in NOT_TAKEN:
        if base.get(key) is not None:
            why = ("every run would write the same file" if key in PER_RUN_OUTPUTS else
                   "its runs write no checkpoints" if key in CHECKPOINTING else
                   "its runs cannot shrink: a rank's death ends the sweep")
            raise ConfigError(f"sweep does not take {key!r}: {why}; results go to the sweep's --output JSON")
    for key, values in varied.items():
        if key in NOT_VARIED:
            raise ConfigError(f"{key!r} cannot be varied in a sweep (fixed keys: {', '.join(NOT_VARIED)})")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"values to vary for {key!r} must be a non-empty list, got {values!r}")
    settings = {**SWEEP_OPTIONS, **options}
    _check_options(settings)
    tuple_keys = {f.name for f in dataclasses.fields(TrainConfig) if f.type in (tuple, "tuple")}
    combos = itertools.product(*([[v] if k in tuple_keys and isinstance(v, int) else v for v in vs]
                                 for k, vs in varied.items()))
    configs = tuple(make_config({**base, **dict(zip(varied, combo))}) for combo in combos)
    if not configs[0].validation_split:
        raise ConfigError("a sweep ranks its runs on held-out data: validation_split must lie in "
                          "(0, 1), got 0")
    tried = {key: _distinct(_plain(getattr(config, key)) for config in configs) for key in varied}
    return SweepSpec(make_config(base), tried, configs, **settings)


def _reject_unknown(kind: str, given: dict[str, Any], valid) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {kind} {unknown[0]!r}; valid keys: {', '.join(valid)}")


def _check_options(settings: dict[str, Any]) -> None:
    require_positive_int("ranks_per_config", settings["ranks_per_config"])
    if not isinstance(settings["ensemble"], bool) or not isinstance(settings["output"], str):
        raise ConfigError("ensemble must be true or false and output a file name")


def _distinct(values) -> list[Any]:
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    return distinct


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def add_sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    """The train flags a sweep accepts (the base; not the per-run outputs) plus its own."""
    sweep.add_argument("--config", help="TOML file with [train], [vary] and [sweep] tables")
    add_train_flags(sweep, exclude=NOT_TAKEN)
    sweep.add_argument("--vary", action="append", default=[], metavar="KEY=VALUE",
                       help="a value to try for a train key; repeat it, e.g. --vary lr=0.01 --vary lr=0.1")
    sweep.add_argument("--ranks-per-config", type=int, help="ranks training each configuration (default 1)")
    sweep.add_argument("--ensemble", action="store_true", default=None,
                       help="also average every run's test predictions and score the ensemble")
    sweep.add_argument("--output", help="JSON file of the results (default sweep.json)")


def sweep_spec(args: argparse.Namespace) -> SweepSpec:
    """Flags override the TOML file's tables; ``--vary`` values replace a TOML list for that key."""
    tables = load_toml_tables(args.config) if args.config else {}
    base = {**tables.get("train", {}), **typed(args)}
    varied = {**tables.get("vary", {}), **_parse_vary(args.vary)}
    options = {**tables.get("sweep", {}),
               **{k: getattr(args, k) for k in SWEEP_OPTIONS if getattr(args, k) is not None}}
    return make_sweep_spec(base, varied, options)


def load_toml_tables(path: str) -> dict[str, dict[str, Any]]:
    tables = read_toml(path)
    unknown = sorted(k for k, v in tables.items() if k not in TABLES or not isinstance(v, dict))
    if unknown:
        raise ConfigError(f"{path}: unknown table or key {unknown[0]!r}; a sweep file has the "
                          f"tables {', '.join(TABLES)}")
    return tables


def _parse_vary(items: list[str]) -> dict[str, list[str]]:
    varied: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--vary takes KEY=VALUE, got {item!r}")
        varied.setdefault(key.strip().replace("-", "_"), []).append(value.strip())
    return varied
