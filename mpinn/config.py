"""Run configuration: a frozen dataclass filled from a TOML file and command-line flags.

Stdlib only (no numpy), so the CLI can read it and set BLAS threads before numpy loads.
Unknown keys and wrong types are rejected with the list of valid keys. The run's settings are
declared here; each strategy's options come from :mod:`mpinn.registry`.
"""

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from mpinn import registry
from mpinn.errors import ConfigError, require_positive_int

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SAMPLERS = ("random", "contiguous")
RESUME_CHOICES = ("never", "auto", "fresh")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")  # the names mpinn.optim.OPTIMIZERS registers
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")  # hidden activations of mpinn.nn
LR_SCHEDULES = ("step", "cosine", "warmup-cosine", "plateau")
SCHEDULE_UNITS = ("epoch", "step")
NONFINITE_CHOICES = ("stop", "skip")
FAILURE_CHOICES = ("abort", "shrink")  # what the survivors do when a rank dies
SEED_LIMIT = 2**32  # numpy's legacy generators and the samplers take seeds below this
DEFAULT_WATCHDOG_SECONDS = 600.0


@dataclass(frozen=True)
class RunSettings:
    """The settings of a run other than the strategy's options (see :data:`TrainConfig`)."""

    dataset: str = "digits"
    hidden: tuple = (64,)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    clip_norm: Optional[float] = None
    lr_schedule: Optional[str] = None
    lr_schedule_per: str = "epoch"
    lr_step_size: int = 10
    lr_factor: float = 0.1
    lr_warmup: int = 1
    lr_min: float = 0.0
    lr_patience: int = 3
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    num_classes: Optional[int] = None
    strategy: str = "data"
    sampler: str = "random"
    drop_last: bool = False
    accumulation_steps: int = 1
    threads: int = 1
    metrics: Optional[str] = None
    save: Optional[str] = None
    verbose: int = 1
    verbose_ranks: bool = False
    log_every: Optional[int] = None
    validation_split: float = 0.1
    checkpoint_dir: Optional[str] = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    resume: str = "never"
    watchdog: float = DEFAULT_WATCHDOG_SECONDS
    on_nonfinite: str = "stop"
    on_failure: str = "abort"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulation_steps", "threads"):
            require_positive_int(name, getattr(self, name))
        if self.num_classes is not None:
            require_positive_int("num_classes", self.num_classes)
        if not 0 <= self.seed < SEED_LIMIT:
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {self.seed}")
        self._check_reporting()
        if any(width < 1 for width in self.hidden):
            raise ConfigError(f"hidden layer sizes must be positive integers, got {list(self.hidden)}")
        self._check_hyperparameters()
        if self.grid is not None and self.strategy == "data":  # --grid alone means --strategy grid
            object.__setattr__(self, "strategy", "grid")
        registry.get(self.strategy)
        for entry in {entry.options: entry for entry in registry.entries()}.values():
            entry.make_options(self)  # every option is checked, whichever strategy runs
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        if self.on_nonfinite not in NONFINITE_CHOICES:
            raise ConfigError(f"unknown on_nonfinite {self.on_nonfinite!r}; choose one of: "
                              f"{', '.join(NONFINITE_CHOICES)}")
        if self.on_failure not in FAILURE_CHOICES:
            raise ConfigError(f"unknown on_failure {self.on_failure!r}; choose one of: "
                              f"{', '.join(FAILURE_CHOICES)}")
        if self.on_nonfinite == "skip" and self.strategy == "async":
            raise ConfigError("option on_nonfinite skip needs every rank in step; asynchronous servers "
                              "apply steps on their own: use option on_nonfinite stop with option "
                              "strategy async")
        self._check_checkpointing()
        self._check_lr_schedule()
        covered = registry.takes("deterministic")
        if getattr(self, "deterministic", False) and self.strategy not in covered:
            names = ", ".join(covered[:-1]) + f" and {covered[-1]}" if len(covered) > 1 else covered[0]
            raise ConfigError(f"option deterministic covers option strategy {names}, "
                              f"not {self.strategy}; drop one of the two")

    def _check_reporting(self) -> None:
        if self.verbose not in (0, 1, 2):
            raise ConfigError(f"verbose must be 0 (silent), 1 (progress) or 2 (one line per epoch), "
                              f"got {self.verbose}")
        if self.log_every is not None:
            require_positive_int("log_every", self.log_every)
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError(f"validation_split must lie in [0, 1) (0: no validation), "
                              f"got {self.validation_split}")

    def _check_hyperparameters(self) -> None:
        """Finite and in range: an infinite learning rate trains a NaN model, not an error."""
        if self.lr is not None:
            registry.positive_number("lr", self.lr)
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")

    def _check_checkpointing(self) -> None:
        if self.resume not in RESUME_CHOICES:
            raise ConfigError(f"unknown resume {self.resume!r}; choose one of: {', '.join(RESUME_CHOICES)}")
        if self.resume != "never" and not self.checkpoint_dir:
            raise ConfigError(f"resume {self.resume} needs a checkpoint directory: add option checkpoint_dir")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ConfigError("checkpoint_every must be >= 0 (0: at epoch ends only) and "
                              "keep_checkpoints >= 1")
        if not (math.isfinite(self.watchdog) and self.watchdog >= 0):
            raise ConfigError(f"watchdog must be a number of seconds >= 0 (0: off), got {self.watchdog}")

    def _check_lr_schedule(self) -> None:
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ConfigError(f"clip_norm must be a positive number, got {self.clip_norm}")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of: "
                              f"{', '.join(LR_SCHEDULES)}")
        if self.lr_schedule_per not in SCHEDULE_UNITS:
            raise ConfigError(f"lr_schedule_per must be epoch or step, got {self.lr_schedule_per!r}")
        if self.lr_schedule == "plateau" and not self.lr_factor < 1:
            raise ConfigError(f"lr_factor must be below 1 for the plateau schedule (it reduces the lr), "
                              f"got {self.lr_factor}")
        for name in ("lr_step_size", "lr_warmup", "lr_patience"):
            require_positive_int(name, getattr(self, name))
        if not self.lr_factor > 0 or self.lr_min < 0:
            raise ConfigError(f"lr_factor must be > 0 and lr_min >= 0, got {self.lr_factor} and {self.lr_min}")

    def optimizer_options(self) -> dict[str, float]:
        """The optimizer settings given (the others keep the optimizer's defaults, or on resume
        the checkpoint's); --clip-norm is Keras' global_clipnorm."""
        names = {"lr": "lr", "momentum": "momentum", "weight_decay": "weight_decay",
                 "clip_norm": "global_clipnorm"}
        return {option: getattr(self, name) for name, option in names.items()
                if getattr(self, name) is not None}


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Convert a TOML value or a flag string to the field's type, or say what was expected."""
    base = kind.__args__[0] if getattr(kind, "__args__", None) and type(None) in kind.__args__ else kind
    try:
        if base is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(_whole(v) for v in items if str(v).strip() != "")
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
                return str(value).lower() in ("true", "1", "yes")
            raise ValueError
        if base is int and (isinstance(value, float) or isinstance(value, bool)):
            raise ValueError
        if base is str and not isinstance(value, str):
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        expected = {tuple: "a list of integers", bool: "true or false", int: "an integer",
                    float: "a number", str: "a string"}[base]
        raise ConfigError(f"config key {name!r} must be {expected}, got {value!r}") from None


def _whole(value: Any) -> int:
    """An integer from an int or its decimal text; 1.5, True or "1.5" are errors, not 1."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(value)
    return int(value)


TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
                    for f in registry.option_fields()], bases=(RunSettings,), frozen=True)
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = "A run's settings and every registered strategy's options (flat keys)."


def known_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def make_config(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping, rejecting unknown keys and wrong types."""
    values = registry.renamed_keys(values)
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(types))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(types), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config key {unknown[0]!r}{hint}; valid keys: {', '.join(types)}")
    return TrainConfig(**{k: _coerce(k, v, types[k]) for k, v in values.items()})


def load_toml(path: str) -> dict[str, Any]:
    """The key/value pairs of a TOML config file (a [train] table or top-level keys)."""
    data = read_toml(path)
    return data.get("train", data)


def read_toml(path: str) -> dict[str, Any]:
    """The whole TOML document at ``path``, or a ConfigError saying why it cannot be read."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text (a binary file?); give a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
