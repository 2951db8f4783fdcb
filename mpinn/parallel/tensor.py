"""Tensor parallelism: a wide Dense pair cut over the ranks of a tensor-parallel group.

A column-parallel Dense holds output columns [lo, hi) of a layer, so its output is this
rank's slice of the hidden features and needs no communication; an element-wise activation
then works on the slice alone. The row-parallel Dense after it holds the matching input
rows, so each rank's product is a partial sum: one Allreduce forward makes the full output.
Backward mirrors it: the row layer's input gradient is already this rank's slice, and the
column layer sums its partial input gradients with one Allreduce. Both are ordinary Dense
layers (same math, same flat-buffer views) plus that one exchange, usable in a Sequential.
"""

from __future__ import annotations

import numpy as np

from mpinn.nn import Dense
from mpinn.parallel.comm import Communicator


class _TensorParallelDense(Dense):
    """A Dense holding a slice of a wide layer, exchanging over its tensor group ``comm``."""

    def __init__(self, units: int, comm: Communicator, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform") -> None:
        super().__init__(units, use_bias=use_bias, kernel_initializer=kernel_initializer)
        self.comm = comm


class ColumnParallelDense(_TensorParallelDense):
    """Output columns [lo, hi) of a Dense; backward sums the input gradient over ``comm``."""

    kind = "column_dense"

    def backward(self, dout: np.ndarray, need_input_grad: bool = True,
                 inplace: bool = False) -> np.ndarray | None:
        dx = super().backward(dout, need_input_grad, inplace)
        if dx is not None:
            self.comm.Allreduce(dx)
        return dx


class RowParallelDense(_TensorParallelDense):
    """Input rows [lo, hi) of a Dense; forward sums the partial products over ``comm``, then
    adds the (whole, replicated) bias once."""

    kind = "row_dense"

    def forward(self, x: np.ndarray, training: bool = True, inplace: bool = False) -> np.ndarray:
        self._x = x
        y = x @ self.W
        self.comm.Allreduce(y)
        if self.b is not None:
            y += self.b
        return y
