"""Training: the loop, its callbacks and metrics. Strategies come from mpinn.parallel."""

from mpinn.train.callbacks import Callback, MetricsLog, ProgressLogger, default_callbacks
from mpinn.train.loop import History, evaluate, fit

__all__ = ["Callback", "History", "MetricsLog", "ProgressLogger", "default_callbacks", "evaluate",
           "fit"]
