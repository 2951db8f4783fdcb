"""The one place where mpinn's error types live.

Bad input is reported as :class:`ConfigError` (a ``ValueError``), raised alike on every rank
before any collective, with a message that names what is wrong and how to fix it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable


class ConfigError(ValueError):
    """Invalid user input: a configuration, a name, a shape or a value out of range."""


def unknown_name(kind: str, name: object, known: Iterable[str]) -> ConfigError:
    """Error for a name that is not one of ``known``, listing the valid choices."""
    choices = ", ".join(sorted(known))
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {choices}")


def require_positive(name: str, value: float) -> None:
    """Raise ConfigError unless ``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def require_positive_int(name: str, value: object) -> int:
    """``value`` as an int, or a ConfigError naming ``name`` unless it is a whole number >= 1
    (bools and non-integers such as 1.5 are rejected, not rounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Preempted(Exception):
    """Training stopped on a scheduler's signal (SIGTERM, SIGUSR1) after every rank agreed and a
    checkpoint was written; run again with resume to continue. The CLI exits with
    ``EXIT_CODE`` (EX_TEMPFAIL), which a batch script can test to requeue the job."""

    EXIT_CODE = 75


class RankLost(Exception):
    """A rank of the job died, as MPI's fault tolerance (ULFM) reported it to a survivor.

    Under ``on_failure="shrink"`` the survivors catch it and continue on a shrunk communicator;
    where shrinking is impossible they stop, and the CLI exits with ``EXIT_CODE`` (EX_TEMPFAIL,
    as for preemption) so the run continues from the last checkpoint."""

    EXIT_CODE = 75

    def __init__(self, dead_ranks: Iterable[int], message: str = "", why: str | None = None) -> None:
        self.dead_ranks = sorted(dead_ranks)
        self.why = why  # set where the loss is final: what was lost that no shrink brings back
        names = ", ".join(str(rank) for rank in self.dead_ranks) or "unknown"
        super().__init__(message or f"rank(s) {names} of the job died" + (f": {why}" if why else ""))


class UnsupportedFeature(ConfigError, NotImplementedError):
    """A Keras/TensorFlow feature mpinn does not offer; the message names it and what mpinn
    supports instead (never an ``AttributeError`` deep in a port)."""

    def __init__(self, feature: str, instead: str) -> None:
        super().__init__(f"{feature} is not supported by mpinn; {instead}")


class Diverged(FloatingPointError):
    """Training met a non-finite loss or gradient (at the step the message names) and stopped
    before writing anything from it; the last checkpoint is kept. The CLI exits with
    ``EXIT_CODE``."""

    EXIT_CODE = 3
