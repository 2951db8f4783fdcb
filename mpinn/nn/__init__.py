"""Layers, losses, initialisers and Sequential: pure numpy, never MPI."""

from mpinn.nn.init import INITIALIZERS, get_initializer
from mpinn.nn.layers import (Activation, Dense, Dropout, LeakyReLU, Layer, ReLU, Sigmoid, Softmax,
                             Tanh)
from mpinn.nn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from mpinn.nn.sequential import Head, Sequential, training_head

__all__ = [
    "Activation", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dense", "Dropout", "Head",
    "INITIALIZERS", "Layer", "LeakyReLU", "Loss", "MSELoss", "ReLU", "Sequential", "Sigmoid",
    "Softmax", "Tanh", "get_initializer", "training_head",
]
