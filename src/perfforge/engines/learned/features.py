"""Features of one (op, GPU) pair for the learned kernel model, and the roofline bound it is scaled from.

Every op the model covers belongs to one *family* with its own feature vector:

- ``gemm``: matmul / linear and batched matmul (``OpKind.MATMUL``, ``OpKind.BMM``);
- ``conv``: 2-D convolution as an implicit GEMM (``OpKind.CONV2D``);
- ``vector``: pointwise ops, layer/RMS norm and softmax.

Features are GPU-normalised where they can be (waves = tiles / SMs, arithmetic intensity / machine balance,
working set / L2), so that a tree split learned on five GPUs means the same thing on a sixth. The roofline
bound ``max(flops / peak, bytes / bandwidth)`` uses datasheet peaks with no efficiency factor: the learned
model predicts ``log(latency / bound)`` and a prediction is never below the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import Op, OpKind

FAMILIES = ("gemm", "conv", "vector")
FAMILY_OF_KIND: dict[OpKind, str] = {
    OpKind.MATMUL: "gemm", OpKind.BMM: "gemm", OpKind.CONV2D: "conv",
    OpKind.ELEMENTWISE: "vector", OpKind.LAYER_NORM: "vector", OpKind.RMS_NORM: "vector", OpKind.SOFTMAX: "vector",
}
# Output tiles of typical library GEMM kernels (cuBLAS/CUTLASS names such as ``sgemm_128x64``): the
# wave-quantisation features are computed for each, and the trees pick what matters per GPU.
GEMM_TILES = ((64, 64), (128, 64), (128, 128), (256, 128))
THREADS_PER_SM = 2048          # resident threads per SM on every NVIDIA GPU from Pascal to Hopper
ELEMENTS_PER_THREAD = 4        # vectorised pointwise kernels process 4 elements per thread (float4 loads)
_VECTOR_FNS = ("add", "mul", "div", "pow", "gelu", "relu", "tanh", "swiglu", "silu", "copy")
_VECTOR_KINDS = (OpKind.ELEMENTWISE, OpKind.LAYER_NORM, OpKind.RMS_NORM, OpKind.SOFTMAX)

GPU_FEATURES = ("log2_sms", "log2_peak", "log2_bandwidth", "log2_l2", "log2_memory", "log2_balance",
                "log2_peak_per_sm", "tensor_math")
_COMMON = ("log2_bound", "log2_compute_over_memory", "log2_flops", "log2_bytes", "log2_bytes_over_l2",
           "dtype_bytes")
_GEMM = ("log2_b", "log2_m", "log2_n", "log2_k", "is_bmm", "aligned", "log2_mn_over_sms",
         *(f"{name}_{tm}x{tn}" for tm, tn in GEMM_TILES for name in ("log2_waves", "wave_eff", "pad_eff")))
_CONV = ("log2_m", "log2_n", "log2_k", "log2_batch", "log2_in_ch", "log2_hw", "kernel", "stride", "padding",
         *(f"{name}_{tm}x{tn}" for tm, tn in GEMM_TILES for name in ("log2_waves", "wave_eff", "pad_eff")))
_VECTOR = ("log2_numel", "log2_cols", "log2_rows", "log2_elem_waves", "n_inputs", "flops_per_elem",
           *(f"kind_{k.value}" for k in _VECTOR_KINDS), *(f"fn_{f}" for f in _VECTOR_FNS))
FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "gemm": (*GPU_FEATURES, *_COMMON, *_GEMM),
    "conv": (*GPU_FEATURES, *_COMMON, *_CONV),
    "vector": (*GPU_FEATURES, *_COMMON, *_VECTOR),
}


def _log2(x: float) -> float:
    return math.log2(max(float(x), 1e-30))


def math_peak(op: Op, device: DeviceSpec, compute_dtype: DType) -> float:
    """FLOP/s the op's math runs at: the matrix-unit peak for GEMM/conv, the vector peak otherwise."""
    if op.kind in (OpKind.MATMUL, OpKind.BMM, OpKind.CONV2D):
        return device.peak_flop_per_s(compute_dtype)
    return device.vector_flop_per_s(op.dtype)


def roofline_bound_s(op: Op, device: DeviceSpec, compute_dtype: DType | None = None) -> float:
    """``max(flops / peak, bytes / bandwidth)`` with datasheet peaks: no kernel can beat it."""
    dtype = compute_dtype or op.dtype
    compute_s = op.flops / math_peak(op, device, dtype) if op.flops else 0.0
    memory_s = op.bytes / device.memory_bytes_per_s if op.bytes else 0.0
    return max(compute_s, memory_s)


def l2_bytes(device: DeviceSpec) -> float:
    """The device's L2 size in bytes (its catalog figure; 1 byte when the catalog has none). Every GPU the
    model trains on needs one: without it log2(L2) = 0 lies far outside the others' range (the P4 had none
    until its catalog entry got GP104's 2 MiB, and the MLP's P4 error was 350%)."""
    return device.l2_bytes or 1.0


def gpu_features(op: Op, device: DeviceSpec, compute_dtype: DType) -> list[float]:
    peak = math_peak(op, device, compute_dtype)
    fp32 = device.vector_flop_per_s(DType.FP32)
    bw = device.memory_bytes_per_s
    return [_log2(device.sms), _log2(peak), _log2(bw), _log2(l2_bytes(device)), _log2(device.memory_bytes),
            _log2(peak / bw), _log2(peak / device.sms), 1.0 if peak > 1.01 * fp32 else 0.0]


def tile_features(m: int, n: int, batch: int, sms: int,
                  tiles: tuple[tuple[int, int], ...] = GEMM_TILES) -> list[float]:
    """Per output tile (tm x tn) of an m x n output, ``batch`` deep: log2 waves over the SMs, the last wave's
    fill (wave efficiency) and the padded tiles' useful share."""
    out: list[float] = []
    for tm, tn in tiles:
        tiles_m, tiles_n = -(-m // tm), -(-n // tn)
        tiles = batch * tiles_m * tiles_n
        waves = -(-tiles // sms)
        out += [_log2(waves), tiles / (waves * sms), (m * n) / (tiles_m * tm * tiles_n * tn)]
    return out


def op_features(op: Op, device: DeviceSpec, compute_dtype: DType | None = None) -> tuple[str, np.ndarray, float]:
    """(family, feature vector, roofline bound in s). Raises KeyError for an op kind no family covers."""
    family = FAMILY_OF_KIND[op.kind]
    dtype = compute_dtype or op.dtype
    peak = math_peak(op, device, dtype)
    bw = device.memory_bytes_per_s
    compute_s = op.flops / peak if op.flops else 0.0
    memory_s = op.bytes / bw if op.bytes else 0.0
    bound = max(compute_s, memory_s)
    row = gpu_features(op, device, dtype)
    row += [_log2(bound), _log2(max(compute_s, 1e-15) / max(memory_s, 1e-15)), _log2(op.flops + 1),
            _log2(op.bytes + 1), _log2((op.bytes + 1) / l2_bytes(device)), float(op.dtype.bytes)]
    a = op.attrs
    sms = device.sms
    if family == "gemm":
        m, n, k, b = int(a["m"]), int(a["n"]), int(a["k"]), int(a.get("batch", 1))
        ld_n, ld_k = a.get("ld_dims", (n, k))
        aligned = (ld_n * dtype.bytes) % 16 == 0 and (ld_k * dtype.bytes) % 16 == 0
        row += [_log2(b), _log2(m), _log2(n), _log2(k), 1.0 if op.kind is OpKind.BMM else 0.0, float(aligned),
                _log2(b * m * n / sms), *tile_features(m, n, b, sms)]
    elif family == "conv":
        m, n, k = int(a["m"]), int(a["n"]), int(a["k"])
        h, _w = a.get("hw", (1, 1))
        row += [_log2(m), _log2(n), _log2(k), _log2(op.inputs[0][0] if op.inputs else 1), _log2(a.get("in_ch", 1)),
                _log2(h), float(a.get("kernel", 1)), float(a.get("stride", 1)), float(a.get("padding", 0)),
                *tile_features(m, n, 1, sms)]
    else:
        numel = int(a.get("numel", 1))
        # norms and softmax reduce over the last dimension; pointwise kernels see a flat array
        cols = int(op.inputs[0][-1]) if op.kind is not OpKind.ELEMENTWISE and op.inputs and op.inputs[0] else numel
        fn = str(a.get("fn", ""))
        n_inputs = len(op.inputs) if op.kind is OpKind.ELEMENTWISE else 1
        row += [_log2(numel), _log2(cols), _log2(max(1, numel // max(cols, 1))),
                _log2(numel / (sms * THREADS_PER_SM * ELEMENTS_PER_THREAD)), float(n_inputs),
                op.flops / max(numel, 1), *(1.0 if op.kind is k else 0.0 for k in _VECTOR_KINDS),
                *(1.0 if fn == f else 0.0 for f in _VECTOR_FNS)]
    return family, np.asarray(row, dtype=np.float64), bound


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Rows of one family. ``x``/``bound_s``/``kinds`` hold distinct rows only; op ``index[j]`` of the caller's
    list uses row ``row[j]`` (a transformer repeats the same layer: its ops share rows)."""

    family: str
    x: np.ndarray
    bound_s: np.ndarray
    kinds: tuple[OpKind, ...]
    index: np.ndarray
    row: np.ndarray


def batch_features(ops: list[Op], device: DeviceSpec, dtypes: list[DType | None]) -> tuple[dict[str, FeatureBatch], list[int]]:
    """Featurise many ops at once, grouped by family; also return the indices of ops no family covers."""
    rows: dict[str, list[np.ndarray]] = {f: [] for f in FAMILIES}
    bounds: dict[str, list[float]] = {f: [] for f in FAMILIES}
    kinds: dict[str, list[OpKind]] = {f: [] for f in FAMILIES}
    index: dict[str, list[int]] = {f: [] for f in FAMILIES}
    row_of: dict[str, list[int]] = {f: [] for f in FAMILIES}
    uncovered: list[int] = []
    cache: dict[tuple, tuple[str, int]] = {}
    for i, (op, dt) in enumerate(zip(ops, dtypes)):
        fam = FAMILY_OF_KIND.get(op.kind)
        if fam is None:
            uncovered.append(i)
            continue
        a = op.attrs
        key = (op.kind, op.dtype, dt, op.flops, op.bytes, op.inputs[0] if op.inputs else (), len(op.inputs),
               a.get("m"), a.get("n"), a.get("k"), a.get("batch"), a.get("ld_dims"), a.get("fn"), a.get("kernel"),
               a.get("stride"), a.get("padding"), a.get("hw"))
        hit = cache.get(key)
        if hit is None:
            _, x, b = op_features(op, device, dt)
            rows[fam].append(x)
            bounds[fam].append(b)
            kinds[fam].append(op.kind)
            hit = cache[key] = (fam, len(rows[fam]) - 1)
        index[fam].append(i)
        row_of[fam].append(hit[1])
    out = {f: FeatureBatch(f, np.vstack(rows[f]), np.asarray(bounds[f]), tuple(kinds[f]),
                           np.asarray(index[f], dtype=np.int64), np.asarray(row_of[f], dtype=np.int64))
           for f in FAMILIES if rows[f]}
    return out, uncovered
