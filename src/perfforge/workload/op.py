"""The operator: one kernel-sized unit of work with its shapes, FLOPs and bytes.

Counting conventions (stated once, used everywhere):
- one multiply-accumulate is 2 FLOPs (``FMA_FLOPS``);
- bytes are the minimum traffic to device memory: every input read once, every output written once;
- ``saved_bytes`` is what the forward op keeps alive for its backward (activation memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Mapping

from perfforge.core.dtypes import DType

FMA_FLOPS = 2


class OpKind(str, Enum):
    MATMUL = "matmul"          # [m,k] x [k,n], also linear layers
    BMM = "bmm"                # batched matmul of two activations
    CONV2D = "conv2d"
    ATTENTION = "attention"    # fused (flash-style) attention core: softmax(QK^T)V
    ELEMENTWISE = "elementwise"
    LAYER_NORM = "layer_norm"
    RMS_NORM = "rms_norm"
    BATCH_NORM = "batch_norm"
    SOFTMAX = "softmax"
    EMBEDDING = "embedding"
    POOL = "pool"
    REDUCTION = "reduction"
    MOE_ROUTER = "moe_router"  # top-k gating bookkeeping (the gate GEMM itself is a MATMUL)
    OPTIMIZER = "optimizer"


# Kinds whose FLOPs run on the matrix (tensor-core) units.
MATRIX_KINDS = frozenset({OpKind.MATMUL, OpKind.BMM, OpKind.CONV2D, OpKind.ATTENTION})


class Phase(str, Enum):
    FORWARD = "forward"
    BACKWARD_INPUT = "backward_input"    # gradient with respect to activations (dgrad)
    BACKWARD_WEIGHT = "backward_weight"  # gradient with respect to parameters (wgrad)
    OPTIMIZER = "optimizer"


@dataclass(frozen=True, slots=True)
class Op:
    """One operator. ``attrs`` carries the kernel dimensions engines need (gemm m/n/k, conv geometry...)."""

    name: str
    kind: OpKind
    dtype: DType
    flops: float
    bytes_read: float
    bytes_written: float
    inputs: tuple[tuple[int, ...], ...] = ()
    outputs: tuple[tuple[int, ...], ...] = ()
    params: int = 0
    saved_bytes: float = 0.0
    layer: str = ""
    phase: Phase = Phase.FORWARD
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def param_bytes(self) -> float:
        return self.params * self.dtype.bytes

    def with_(self, **changes: Any) -> "Op":
        return replace(self, **changes)
