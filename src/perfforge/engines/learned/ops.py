"""Single-kernel requests in NeuSight's kernel-CSV naming, turned into perfforge ops.

Shape columns per op (NeuSight's CSV headers): ``bmm`` and ``linear``: B, M, N, K with NeuSight's meaning, N
the reduction and K the output width: ``bmm`` is ``torch.bmm([B,M,N], [B,N,K])`` and ``linear`` is
``torch.nn.Linear(N, K)`` on a [B, M, N] input, so B*M rows, with bias (neusight/Dataset/collect.py,
trsharm25/NeuSight @ bca31fb; the launch grids its CSVs record tile M x K on every row whose N and K differ
enough to tell); vector ops: B, H (norms and softmax
normalise over H); ``conv``: B, Input_Channel, Output_Channel, Kernel_Size, Input_Size, Stride, Padding
(NeuSight's files spell it ``Kernel_Szie``; both are accepted). ``addu``/``mulu``/``divu``/``powu`` are the
tensor-scalar forms.
"""

from __future__ import annotations

from typing import Mapping

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.op import Op

GEMM_SHAPE = ("B", "M", "N", "K")
VECTOR_SHAPE = ("B", "H")
CONV_SHAPE = ("B", "Input_Channel", "Output_Channel", "Kernel_Size", "Input_Size", "Stride", "Padding")
_BINARY = ("add", "mul", "div", "pow")
_SCALAR = ("addu", "mulu", "divu", "powu")
_UNARY = ("gelu", "relu", "tanh")
SHAPES: dict[str, tuple[str, ...]] = {
    "bmm": GEMM_SHAPE, "linear": GEMM_SHAPE, "conv": CONV_SHAPE, "ln": VECTOR_SHAPE, "softmax": VECTOR_SHAPE,
    **{op: VECTOR_SHAPE for op in (*_BINARY, *_SCALAR, *_UNARY)},
}
_ALIASES = {"Kernel_Szie": "Kernel_Size"}


def storage_and_compute(dtype: str | DType) -> tuple[DType, DType]:
    """tf32 means fp32 tensors computed on TF32 tensor cores."""
    d = DType.parse(dtype)
    return (DType.FP32, DType.TF32) if d is DType.TF32 else (d, d)


def _check_op(op: str) -> str:
    key = op.strip().lower()
    if key not in SHAPES:
        raise ConfigError(f"unknown op '{op}' (allowed: {', '.join(SHAPES)})")
    return key


def parse_shape(op: str, text: str) -> dict[str, int]:
    """``--shape 8,512,512,64`` for ``bmm`` -> {"B": 8, "M": 512, "N": 512, "K": 64}."""
    key = _check_op(op)
    cols = SHAPES[key]
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != len(cols):
        raise ConfigError(f"--shape for {key} needs {len(cols)} values {','.join(cols)}, got {len(parts)}: '{text}'")
    return shape_from_mapping(key, dict(zip(cols, parts)))


def shape_from_mapping(op: str, row: Mapping[str, object]) -> dict[str, int]:
    """The op's shape columns from a CSV row (extra columns are ignored)."""
    key = _check_op(op)
    row = {_ALIASES.get(k, k): v for k, v in row.items()}
    out: dict[str, int] = {}
    for col in SHAPES[key]:
        raw = row.get(col)
        if raw is None or str(raw).strip() == "":
            raise ConfigError(f"{key}: missing shape column '{col}' (needs {', '.join(SHAPES[key])})")
        try:
            number = float(str(raw))   # "64.0", as pandas writes integer columns with gaps, is 64
            if number != int(number):
                raise ValueError
            value = int(number)
        except (ValueError, OverflowError):
            raise ConfigError(f"{key}: shape column '{col}' must be an integer, got '{raw}'") from None
        if value < (0 if col == "Padding" else 1):
            raise ConfigError(f"{key}: shape column '{col}' must be {'>= 0' if col == 'Padding' else '>= 1'}, got {value}")
        out[col] = value
    return out


def build_op(op: str, shape: Mapping[str, int], dtype: str | DType) -> tuple[Op, DType]:
    """(the perfforge op, its compute dtype)."""
    key = _check_op(op)
    storage, compute = storage_and_compute(dtype)
    s = shape
    if key == "bmm":
        return L.bmm("bmm", s["B"], s["M"], n=s["K"], k=s["N"], dtype=storage), compute
    if key == "linear":
        return L.linear("linear", s["B"] * s["M"], in_features=s["N"], out_features=s["K"], dtype=storage,
                        bias=True), compute
    if key == "conv":
        try:
            conv, _ = L.conv2d("conv", s["B"], s["Input_Channel"], (s["Input_Size"], s["Input_Size"]),
                               s["Output_Channel"], s["Kernel_Size"], storage, stride=s["Stride"], padding=s["Padding"])
        except ValueError as exc:
            raise ConfigError(f"conv: {exc}") from None
        return conv, compute
    rows, cols = s["B"], s["H"]
    if key == "ln":
        return L.layer_norm("ln", (rows, cols), storage), compute
    if key == "softmax":
        return L.softmax("softmax", (rows, cols), storage), compute
    if key in _BINARY:
        return L.elementwise(key, (rows, cols), storage, fn=key, n_inputs=2), compute
    if key in _SCALAR:
        return L.elementwise(key, (rows, cols), storage, fn=key[:-1], n_inputs=1), compute
    return L.elementwise(key, (rows, cols), storage, fn=key, n_inputs=1), compute
