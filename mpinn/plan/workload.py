"""What one training step of an MLP costs a rank: matmuls, element-wise passes, memory.

The counts follow the code in :mod:`mpinn.nn` and :mod:`mpinn.optim` (float32):

- Dense forward is ``x @ W`` then ``y += b``; its ReLU runs in place. Backward is one
  matmul for dW (written straight into the cleared buffer), one for dx (skipped for the
  first layer, whose input gradient nobody needs), a column sum for db, and the ReLU mask
  multiply. Element-wise passes are charged at the profile's streaming bandwidth.
- Every step clears the gradient buffer and runs the optimizer over every parameter.
- Memory per rank: parameters, gradients, the optimizer's two scratch arrays and its state
  arrays, plus the activations kept for backward.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from mpinn.errors import ConfigError, unknown_name
from mpinn.plan.costs import interpolate
from mpinn.plan.profile import Compute

# Bytes moved per output element by the element-wise work around a hidden Dense + ReLU:
# forward: bias add (read+write) and in-place ReLU (read+write);
# backward: ReLU mask (read y, write bool; read dout and mask, write dx) and the db sum.
HIDDEN_FORWARD_BYTES = 16
HIDDEN_BACKWARD_BYTES = 18
# The output layer has no activation; the fused log-softmax + NLL makes a few passes.
OUTPUT_FORWARD_BYTES = 8
OUTPUT_BACKWARD_BYTES = 4
LOSS_BYTES = 40
# Per parameter and step: zero_grad writes it once; the optimizer update streams through
# params, grads, scratch and state (SGD: work = lr*g; p -= work).
ZERO_GRAD_BYTES = 4
OPTIMIZER_BYTES = {"sgd": 24, "momentum": 44, "adam": 96}
OPTIMIZER_STATE_ARRAYS = {"sgd": 0, "momentum": 1, "adam": 2}
OPTIMIZER_SCRATCH_ARRAYS = 2


@dataclass(frozen=True)
class ModelSpec:
    """An MLP by its layer widths (input, hidden..., output), float32 by default."""

    widths: tuple[int, ...]
    optimizer: str = "sgd"
    dtype_bytes: int = 4

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(w < 1 for w in self.widths):
            raise ConfigError(f"model widths must be two or more positive integers (input, ..., "
                              f"output), got {list(self.widths)}")
        if self.optimizer not in OPTIMIZER_BYTES:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZER_BYTES)

    @property
    def num_layers(self) -> int:
        return len(self.widths) - 1

    def layer_shape(self, index: int) -> tuple[int, int]:
        return self.widths[index], self.widths[index + 1]

    def layer_params(self, index: int) -> int:
        fan_in, fan_out = self.layer_shape(index)
        return fan_in * fan_out + fan_out

    @property
    def num_params(self) -> int:
        return sum(self.layer_params(i) for i in range(self.num_layers))

    def is_output(self, index: int) -> bool:
        return index == self.num_layers - 1


def parse_widths(text: str) -> tuple[int, ...]:
    """``"784,1024,10"`` -> (784, 1024, 10), or a ConfigError naming the bad entry."""
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ConfigError(f"--model must be comma-separated layer widths such as 784,1024,10, "
                          f"got {text!r}") from None


def gemm_formula(compute: Compute, m: float, k: float, n: float) -> float:
    """One core's (m x k) @ (k x n) matmul: call overhead + operand traffic + flops."""
    operands = 4.0 * (m * k + k * n + m * n) / compute.gemm_bytes_per_s
    return compute.gemm_overhead_s + operands + 2.0 * m * k * n / compute.gemm_flops_per_s


@functools.lru_cache(maxsize=4096)
def measured_gemm_ratio(compute: Compute, m: float, k: float, n: float, rows_at: int) -> float:
    """Measured / formula time of a matmul whose dimension ``rows_at`` (0: m, 1: k) is the
    batch's row count, when the calibration timed matmuls of its other two dimensions.

    One line through all shapes misses thin matmuls: on the cluster-in-a-box profiles an
    8-row (8 x 1024) @ (1024 x 1024) took 0.44 ms against the fit's 0.22 ms (and an 8-row
    (8 x 1024) @ (1024 x 784) 0.19 ms, as fitted), and a pipeline with 16 micro-batches runs
    just those. ``mpinn calibrate`` times the model's own matmuls, whole and as tensor-parallel
    slices, at several row counts; the ratio at those is interpolated in log rows (held at the
    end values beyond them). Shapes it did not time keep the formula."""
    shape = (m, k, n)
    ratios = []
    for point in compute.gemm_points:
        if all(point[d] == shape[d] for d in (0, 1, 2) if d != rows_at):
            formula = gemm_formula(compute, *point[:3]) * compute.points_oversubscription
            ratios.append((math.log(point[rows_at]), point[3] / formula))
    return interpolate(ratios, math.log(shape[rows_at])) if ratios else 1.0


class ComputeCost:
    """Seconds of local work on a rank computing ``slowdown`` times slower than one core alone."""

    def __init__(self, compute: Compute, slowdown: float = 1.0) -> None:
        self.compute = compute
        self.slowdown = slowdown

    def gemm(self, m: float, k: float, n: float, rows_at: int = 0) -> float:
        """An (m x k) @ (k x n) matmul whose dimension ``rows_at`` is the row count: the fitted
        formula, corrected by the calibration's points (:func:`measured_gemm_ratio`)."""
        ratio = measured_gemm_ratio(self.compute, m, k, n, rows_at)
        return self.slowdown * gemm_formula(self.compute, m, k, n) * ratio

    def stream(self, nbytes: float) -> float:
        """Element-wise work moving ``nbytes`` through memory."""
        return self.slowdown * nbytes / self.compute.memory_bytes_per_s

    def forward(self, spec: ModelSpec, index: int, rows: int, split_in: int = 1,
                split_out: int = 1) -> float:
        """Forward of Dense ``index`` (and its activation) on ``rows`` rows; a tensor-parallel
        slice holds 1/split_in of its inputs or 1/split_out of its outputs."""
        fan_in, fan_out = spec.layer_shape(index)
        k, n = fan_in / split_in, fan_out / split_out
        per_output = OUTPUT_FORWARD_BYTES + LOSS_BYTES if spec.is_output(index) else HIDDEN_FORWARD_BYTES
        return self.gemm(rows, k, n) + self.stream(rows * n * per_output)

    def backward(self, spec: ModelSpec, index: int, rows: int, split_in: int = 1,
                 split_out: int = 1) -> float:
        """Backward of Dense ``index``: dW, db, the activation's mask and (except for the
        first layer) dx."""
        fan_in, fan_out = spec.layer_shape(index)
        k, n = fan_in / split_in, fan_out / split_out
        per_output = OUTPUT_BACKWARD_BYTES if spec.is_output(index) else HIDDEN_BACKWARD_BYTES
        seconds = self.gemm(k, rows, n, rows_at=1) + self.stream(rows * n * per_output)
        return seconds + (self.gemm(rows, n, k) if index > 0 else 0.0)

    def update(self, spec: ModelSpec, params: float) -> float:
        """zero_grad and the optimizer step over ``params`` parameters."""
        per_param = ZERO_GRAD_BYTES + OPTIMIZER_BYTES[spec.optimizer]
        return self.stream(params * per_param * spec.dtype_bytes / 4)


def state_bytes(spec: ModelSpec, params: float, sharded_over: int = 1) -> float:
    """Parameters + gradients (full), scratch + optimizer state (1/sharded_over: ZeRO)."""
    optimizer_arrays = OPTIMIZER_SCRATCH_ARRAYS + OPTIMIZER_STATE_ARRAYS[spec.optimizer]
    return spec.dtype_bytes * params * (2 + optimizer_arrays / sharded_over)


def activation_bytes(spec: ModelSpec, layers: range, rows: float) -> float:
    """Activations kept for backward by ``layers`` over ``rows`` rows: each layer's input and
    its output (the gradient temporaries of backward are about one output more)."""
    widths = spec.widths[layers.start] + sum(2 * spec.widths[i + 1] for i in layers)
    return spec.dtype_bytes * rows * widths
