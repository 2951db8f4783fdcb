"""The optimizer base class: hyper-parameter bookkeeping, state, twins and serialisation.

An optimizer updates a flat parameter array in place from a flat gradient array of the same
size. It keeps its state (momenta, running averages) in flat arrays sized on the first
``step``, so one instance serves one buffer or one slice of it. Subclasses write ``_update``
only (the template method), using two preallocated scratch arrays so a step makes no
temporaries.

One source of hyperparameters: a strategy that steps slices of the model (a ZeRO shard, a
pipeline stage, a tensor slice, a parameter server) steps a **twin** of the model's
optimizer (``optimizer.twin()``), which keeps only its own state and takes every
hyperparameter from the model's optimizer at each step. Whatever changes that one optimizer
(a schedule, a callback, the user setting ``optimizer.lr``) acts alike under every strategy.

Every optimizer also accepts Keras' clipping thresholds (``clipnorm``, ``global_clipnorm``,
``clipvalue``); it only holds them: the clipping itself runs once per step on the reduced
gradient, in the training step every strategy shares (:mod:`mpinn.optim.clipping`).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from mpinn.errors import ConfigError
from mpinn.optim.clipping import CLIP_DEFAULTS, check_clipping


class Optimizer:
    """Base class. ``defaults`` lists every update setting with torch.optim's default; the
    clipping thresholds of :data:`~mpinn.optim.clipping.CLIP_DEFAULTS` come with every one."""

    defaults: dict[str, Any] = {}
    state_names: tuple[str, ...] = ()

    def __init__(self, **hyper: Any) -> None:
        names = self.setting_names()
        unknown = sorted(set(hyper) - set(names))
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no setting {unknown[0]!r}; its settings "
                              f"are: {', '.join(names)}")
        settings = {**self.defaults, **CLIP_DEFAULTS, **hyper}
        for name in names:
            setattr(self, name, settings[name])
        self._validate()
        self.explicit = frozenset(hyper)  # given by the user: a checkpoint never replaces them
        self.overridden: dict[str, tuple[Any, Any]] = {}  # by load_settings: (saved, kept)
        self.source: Optimizer | None = None
        self.schedule = None  # the Schedule fit steps, saved and restored with the optimizer
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """Every hyperparameter this optimizer takes: its update settings, then clipping."""
        return tuple(cls.defaults) + tuple(CLIP_DEFAULTS)

    def _validate(self) -> None:
        if (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                or not (math.isfinite(self.lr) and self.lr > 0)):
            raise ConfigError(f"{type(self).__name__}: lr must be a positive finite number, "
                              f"got {self.lr!r}")
        decay = getattr(self, "weight_decay", 0)
        if not (math.isfinite(decay) and decay >= 0):
            raise ConfigError(f"{type(self).__name__}: weight_decay must be a finite number >= 0, "
                              f"got {decay!r}")
        check_clipping(type(self).__name__, self.clipnorm, self.global_clipnorm, self.clipvalue)

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.setting_names()}

    # ---- one source: twins ---------------------------------------------------------------
    def twin(self) -> "Optimizer":
        """A copy for a slice of the buffer that keeps its own state (none yet) and takes every
        hyperparameter from this optimizer at each of its steps."""
        twin = copy.copy(self)
        twin.source, twin.schedule = self, None
        twin.steps, twin.state, twin._scratch, twin.overridden = 0, {}, None, {}
        return twin

    def follow(self) -> None:
        """Take the source's hyperparameters as they are now (nothing for the source itself)."""
        if self.source is not None:
            for name in self.setting_names():
                setattr(self, name, getattr(self.source, name))
            self.state_names = self.source.state_names

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        """Update ``params`` in place from ``grads`` (same shape); ``grads`` is left unchanged."""
        if params.shape != grads.shape:
            raise ConfigError(f"params {params.shape} and grads {grads.shape} differ in shape")
        self.follow()
        self._ensure_state(params)
        self.steps += 1
        self._update(params, grads, *self._scratch)

    def _ensure_state(self, params: np.ndarray) -> None:
        """Scratch and state arrays of the buffer's size; a state array a changed setting now
        needs (momentum turned on at a resume) starts at zero."""
        if self._scratch is None or self._scratch[0].shape != params.shape:
            if self.state:
                size = next(iter(self.state.values())).size
                if size != params.size:
                    raise ConfigError(f"{type(self).__name__} holds state for {size} parameters but "
                                      f"was given {params.size}; use one optimizer per buffer or slice")
            self._scratch = (np.empty_like(params), np.empty_like(params))
        for name in self.state_names:
            if name not in self.state:
                self.state[name] = np.zeros_like(params)

    def _update(self, params: np.ndarray, grads: np.ndarray, scratch: np.ndarray,
                work: np.ndarray) -> None:
        """Update ``params`` in place; ``scratch`` and ``work`` are free arrays of its shape."""
        raise NotImplementedError

    def _decayed(self, params: np.ndarray, grads: np.ndarray, scratch: np.ndarray) -> np.ndarray:
        """grads + weight_decay * params (L2 penalty), in scratch when weight decay is on."""
        if not self.weight_decay:
            return grads
        np.multiply(params, self.weight_decay, out=scratch)
        scratch += grads
        return scratch

    # ---- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters (the source's), the schedule's position, step count and state
        arrays (copies), for checkpoints."""
        source = self.source or self
        saved = {"type": type(self).__name__, "hyper": source.hyperparameters(), "steps": self.steps,
                 "state": {name: array.copy() for name, array in self.state.items()}}
        if source.schedule is not None:
            saved["schedule"] = source.schedule.state_dict()
        return saved

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (from this optimizer type): the settings (see
        ``load_settings``; a twin has none of its own), the step count and the state arrays."""
        self._check_type(state)
        if self.source is None:
            self.load_settings(state)
        self.steps = int(state["steps"])
        self.state = {name: np.array(array) for name, array in state["state"].items()
                      if name in self.state_names}
        first = next(iter(self.state.values()), None)
        self._scratch = None if first is None else (np.empty_like(first), np.empty_like(first))

    def load_settings(self, state: dict[str, Any]) -> None:
        """The saved hyperparameters and schedule position, except that a setting given
        explicitly to this optimizer (``explicit``) keeps its value; ``overridden`` then lists
        each such setting whose saved value differed, as (saved, kept). A clipping threshold
        given replaces the saved one, of whichever kind. With a schedule, an explicit lr is the
        schedule's new base rate and the position is restored."""
        self._check_type(state)
        saved = dict(state.get("hyper", {}))
        schedule_state = state.get("schedule")
        if self.schedule is not None and schedule_state is not None:
            saved["lr"] = schedule_state["base_lr"]
        self.overridden = {}
        clipping_given = bool(self.explicit & set(CLIP_DEFAULTS))
        for name in self.setting_names():
            if name not in saved or (clipping_given and name in CLIP_DEFAULTS and name not in self.explicit):
                continue
            value = tuple(saved[name]) if isinstance(self.defaults.get(name), tuple) else saved[name]
            current = self.schedule.base_lr if name == "lr" and self.schedule else getattr(self, name)
            if name in self.explicit:
                if value != current:
                    self.overridden[name] = (value, current)
            elif name != "lr" or self.schedule is None:
                setattr(self, name, value)
        self._validate()
        if self.schedule is not None and schedule_state is not None:
            base = self.schedule.base_lr if "lr" in self.explicit else schedule_state["base_lr"]
            self.schedule.load_state_dict({**schedule_state, "base_lr": base})

    def _check_type(self, state: dict[str, Any]) -> None:
        if state.get("type") != type(self).__name__:
            raise ConfigError(f"optimizer state is from {state.get('type')!r}, "
                              f"not {type(self).__name__!r}")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({settings})"
