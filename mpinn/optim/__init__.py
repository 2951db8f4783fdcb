"""Optimizers and learning-rate schedules over flat arrays: pure numpy, never MPI."""

from mpinn.optim.base import Optimizer
from mpinn.optim.optimizers import OPTIMIZERS, SGD, Adam, AdamW, RMSprop, get_optimizer
from mpinn.optim.schedules import CosineAnnealingLR, LinearWarmup, Schedule, StepLR, WarmupCosine

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "CosineAnnealingLR", "LinearWarmup", "Optimizer",
           "RMSprop", "Schedule", "StepLR", "WarmupCosine", "get_optimizer"]
