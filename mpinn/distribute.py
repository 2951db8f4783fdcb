"""``tf.distribute`` for mpinn (``import mpinn as tf; tf.distribute.MirroredStrategy()``): the
strategies live in :mod:`mpinn.keras.distribute`, beside the model they train."""

from mpinn.keras.distribute import (MirroredStrategy, MultiWorkerMirroredStrategy,
                                    OneDeviceStrategy, Strategy, __getattr__, get_strategy,
                                    has_strategy)

__all__ = ["MirroredStrategy", "MultiWorkerMirroredStrategy", "OneDeviceStrategy", "Strategy",
           "get_strategy", "has_strategy"]
