"""Per-op time: a roofline with shape-aware compute efficiency, size-aware bandwidth and launch overhead.

    time = max(flops / (peak_dtype * eff_compute(shape)), bytes / (bandwidth * eff_memory(bytes) * eff_norm))
           + kernels * kernel_overhead

``eff_norm`` is 1 for streaming kernels (pointwise ops, copies) and ``normalization_memory_efficiency`` for
normalisation-class kernels (layer and RMS norm, softmax, batch norm with batch statistics): they reduce over a
row or a channel before they normalise, and on every GPU measured they move their bytes at 0.45-0.65 of the
datasheet bandwidth where a pointwise op of the same size reaches 0.8-0.9.

Matrix ops (GEMM, conv, attention) run on the dtype's matrix-unit peak; everything else on the vector peak.
An op kind with no rule raises ``UnmodelledOpError``: nothing is silently costed at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.core.dtypes import DType
from perfforge.core.errors import UnmodelledOpError
from perfforge.engines.analytical.calibration import Calibration
from perfforge.engines.analytical.efficiency import (
    attention_efficiency,
    gemm_efficiency,
    memory_efficiency,
)
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import Op, OpKind, Phase

VECTOR_KINDS = frozenset({
    OpKind.ELEMENTWISE, OpKind.LAYER_NORM, OpKind.RMS_NORM, OpKind.BATCH_NORM, OpKind.SOFTMAX,
    OpKind.EMBEDDING, OpKind.POOL, OpKind.REDUCTION, OpKind.MOE_ROUTER, OpKind.OPTIMIZER,
})


NORMALIZATION_KINDS = frozenset({OpKind.LAYER_NORM, OpKind.RMS_NORM, OpKind.SOFTMAX, OpKind.BATCH_NORM})


def is_normalization(op: Op) -> bool:
    """A kernel that reduces before it normalises: layer/RMS norm and softmax always; batch norm when it computes
    batch statistics (training: ``attrs["batch_stats"]``) and in its backward, not in inference, where it is a
    per-channel scale and shift."""
    if op.kind not in NORMALIZATION_KINDS:
        return False
    return op.kind is not OpKind.BATCH_NORM or op.phase is not Phase.FORWARD or bool(op.attrs.get("batch_stats"))


@dataclass(frozen=True, slots=True)
class OpTiming:
    time_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    compute_efficiency: float

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


TENSOR_CORE_DTYPES = frozenset({DType.TF32, DType.FP16, DType.BF16, DType.FP8, DType.INT8})
ALIGNMENT_BYTES = 16  # tensor-core GEMM kernels (and Hopper's TMA) need 16-byte aligned leading dimensions


def gemm_aligned(n: int, k: int, dtype: DType) -> bool:
    """Row-major ``[m,k] x [k,n]``: the leading dimensions are ``k`` and ``n``; ``m`` never misaligns.

    Backward GEMMs keep their forward op's ``ld_dims``: dgrad and wgrad of a linear layer read the same
    ``[n,k]`` weight and ``[m,n]`` gradient, so a vocabulary of 50257 misaligns all three.
    """
    return (n * dtype.bytes) % ALIGNMENT_BYTES == 0 and (k * dtype.bytes) % ALIGNMENT_BYTES == 0


def _compute_peak_and_eff(op: Op, device: DeviceSpec, cal: Calibration, compute_dtype: DType) -> tuple[float, float]:
    a = op.attrs
    if op.kind in (OpKind.MATMUL, OpKind.BMM, OpKind.CONV2D):
        eff = gemm_efficiency(int(a["m"]), int(a["n"]), int(a["k"]), int(a.get("batch", 1)), device.sms, cal).efficiency
        if compute_dtype is DType.FP32:
            eff = min(1.0, eff * cal.fp32_gemm_scale)
        if op.kind is OpKind.CONV2D:
            eff *= cal.conv_efficiency
            if compute_dtype is DType.FP32 and a.get("kernel") == 3 and a.get("stride") == 1:
                eff *= cal.conv3x3_fp32_speedup  # Winograd; dgrad/wgrad keep their forward conv's attrs
        elif compute_dtype in TENSOR_CORE_DTYPES and not gemm_aligned(*a.get("ld_dims", (int(a["n"]), int(a["k"]))),
                                                                      compute_dtype):
            eff *= cal.misaligned_efficiency
        return device.peak_flop_per_s(compute_dtype), eff
    if op.kind is OpKind.ATTENTION:
        backward = op.phase is not Phase.FORWARD
        group = max(1, int(a["heads"]) // int(a["kv_heads"]))
        keys = int(a["seq_kv"]) if not a.get("window") else min(int(a["seq_kv"]), int(a["window"]))  # inner loop
        eff = attention_efficiency(int(a["seq_q"]), keys, int(a["head_dim"]), group, backward, cal)
        return device.peak_flop_per_s(compute_dtype), eff
    if op.kind in VECTOR_KINDS:
        return device.vector_flop_per_s(op.dtype), cal.vector_efficiency
    raise UnmodelledOpError(f"analytical engine has no rule for op kind '{getattr(op.kind, 'value', op.kind)}' ({op.name})")


def op_time(op: Op, device: DeviceSpec, cal: Calibration, compute_dtype: DType | None = None) -> OpTiming:
    """Time of one op on one device. ``compute_dtype`` lets fp32 storage run on TF32 matrix units."""
    dtype = compute_dtype or op.dtype
    peak, eff = _compute_peak_and_eff(op, device, cal, dtype if op.kind not in VECTOR_KINDS else op.dtype)
    compute_s = op.flops / (peak * eff) if op.flops else 0.0
    nbytes = op.bytes
    mem_eff = memory_efficiency(nbytes, cal) * (cal.normalization_memory_efficiency if is_normalization(op) else 1.0)
    memory_s = nbytes / (device.memory_bytes_per_s * mem_eff) if nbytes else 0.0
    kernels = cal.optimizer_kernels if op.kind is OpKind.OPTIMIZER else 1
    overhead_s = kernels * cal.kernel_overhead_s
    return OpTiming(max(compute_s, memory_s) + overhead_s, compute_s, memory_s, overhead_s, eff)
