"""Keras' callbacks for ``fit``: added to the default ones, deciding alike on every rank.

``from mpinn.callbacks import EarlyStopping`` (also ``mpinn.keras.callbacks``). Subclass
:class:`Callback` for your own: it gets ``self.model``, ``self.params`` and, to keep or put back
the whole model under any strategy, ``take_state`` / ``restore_state``.
"""

from mpinn.train.callbacks import Callback, CSVLogger, TensorBoard
from mpinn.train.loop import History
from mpinn.train.monitors import (EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                                  ReduceLROnPlateau, TerminateOnNaN)

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LearningRateScheduler",
           "ModelCheckpoint", "ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN"]
