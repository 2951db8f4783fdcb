"""``tf.keras.callbacks``: mpinn's Keras callbacks (:mod:`mpinn.callbacks`)."""

from mpinn.callbacks import (CSVLogger, Callback, EarlyStopping, History, LearningRateScheduler,
                             ModelCheckpoint, ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from mpinn.keras.unsupported import unsupported_names

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LearningRateScheduler",
           "ModelCheckpoint", "ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN"]

__getattr__ = unsupported_names("tf.keras.callbacks", "mpinn.keras.callbacks has " + ", ".join(__all__))
