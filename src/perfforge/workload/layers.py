"""Constructors for forward ops, each with its FLOP and byte formula.

Every function returns one ``Op`` (or a short list) for the forward pass. Formulas:
- GEMM ``[m,k]x[k,n]``: ``2*m*n*k`` FLOPs (bias adds are not counted, as in fvcore and torch's flop counter);
- conv2d: a GEMM with ``m = N*Ho*Wo``, ``n = Cout``, ``k = Cin/groups*Kh*Kw``;
- attention core: ``2 * 2 * B*H*Sq*Skv*D`` FLOPs (QK^T and PV), causal prefill counts the lower triangle;
- elementwise and normalisations: a few FLOPs per element, always memory-bound in practice.

``saved_bytes`` follows PyTorch autograd: layers that need their input for the weight gradient save it;
a tensor already saved by its producer is not counted twice (builders pass ``saved_bytes`` explicitly there).
"""

from __future__ import annotations

import math
from typing import Sequence

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload.op import FMA_FLOPS, Op, OpKind

# FLOPs per element of the non-matrix ops (sub/mul/add/rsqrt per normalised element and a share of the
# reduction). These only matter for FLOP totals: the engines treat these ops as memory-bound.
LAYER_NORM_FLOPS_PER_ELEMENT = 8
RMS_NORM_FLOPS_PER_ELEMENT = 5
BATCH_NORM_FLOPS_PER_ELEMENT = 8
SOFTMAX_FLOPS_PER_ELEMENT = 5
# GELU's tanh approximation is about 8 FLOPs per element; SiLU about 4 (exp, add, div, mul).
ACTIVATION_FLOPS = {"relu": 1, "gelu": 8, "gelu_tanh": 8, "silu": 4, "swiglu": 5, "geglu": 9, "tanh": 4, "sigmoid": 4,
                    "copy": 0, "fill": 0}
# Pointwise functions whose backward needs a saved tensor (their input or output).
SAVES_FOR_BACKWARD = frozenset({"relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "tanh", "sigmoid"})


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def linear(
    name: str, tokens: int, in_features: int, out_features: int, dtype: DType, *,
    bias: bool = True, layer: str = "", save_input: bool = True, batch: int = 1,
) -> Op:
    """``y = x W^T + b`` on ``tokens`` rows (``batch`` independent copies for grouped experts)."""
    m, k, n = tokens, in_features, out_features
    b = dtype.bytes
    params = batch * (k * n + (n if bias else 0))
    return Op(
        name=name, kind=OpKind.MATMUL, dtype=dtype,
        flops=FMA_FLOPS * batch * m * n * k,
        bytes_read=(batch * m * k + params) * b,
        bytes_written=batch * m * n * b,
        inputs=((batch, m, k), (batch, n, k)), outputs=((batch, m, n),),
        params=params,
        saved_bytes=batch * m * k * b if save_input else 0.0,
        layer=layer,
        attrs={"m": m, "n": n, "k": k, "batch": batch, "has_weight": True, "ld_dims": (n, k)},
    )


def bmm(name: str, batch: int, m: int, n: int, k: int, dtype: DType, *, layer: str = "", save_inputs: bool = True) -> Op:
    """Batched matmul of two activations ``[batch,m,k] x [batch,k,n]``."""
    b = dtype.bytes
    return Op(
        name=name, kind=OpKind.BMM, dtype=dtype,
        flops=FMA_FLOPS * batch * m * n * k,
        bytes_read=batch * (m * k + k * n) * b,
        bytes_written=batch * m * n * b,
        inputs=((batch, m, k), (batch, k, n)), outputs=((batch, m, n),),
        saved_bytes=batch * (m * k + k * n) * b if save_inputs else 0.0,
        layer=layer,
        attrs={"m": m, "n": n, "k": k, "batch": batch, "has_weight": False, "ld_dims": (n, k)},
    )


def conv2d(
    name: str, batch: int, in_ch: int, hw: tuple[int, int], out_ch: int, kernel: int, dtype: DType, *,
    stride: int = 1, padding: int = 0, groups: int = 1, bias: bool = False, layer: str = "", save_input: bool = True,
) -> tuple[Op, tuple[int, int]]:
    """2-D convolution; returns the op and the output spatial size."""
    h, w = hw
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"{name}: input {h}x{w} too small for kernel {kernel} stride {stride}")
    b = dtype.bytes
    k = in_ch // groups * kernel * kernel
    m = batch * ho * wo
    params = out_ch * k + (out_ch if bias else 0)
    x = batch * in_ch * h * w
    op = Op(
        name=name, kind=OpKind.CONV2D, dtype=dtype,
        flops=FMA_FLOPS * m * out_ch * k,
        bytes_read=(x + params) * b,
        bytes_written=m * out_ch * b,
        inputs=((batch, in_ch, h, w), (out_ch, in_ch // groups, kernel, kernel)),
        outputs=((batch, out_ch, ho, wo),),
        params=params, saved_bytes=x * b if save_input else 0.0, layer=layer,
        attrs={"m": m, "n": out_ch, "k": k, "batch": 1, "has_weight": True, "kernel": kernel,
               "stride": stride, "padding": padding, "groups": groups, "in_ch": in_ch, "hw": (h, w)},
    )
    return op, (ho, wo)


def _causal_pairs(seq_q: int, seq_kv: int, window: int) -> float:
    """(query, key) pairs of causal attention with the queries the last ``seq_q`` of ``seq_kv`` positions: query
    i attends to keys [0, seq_kv - seq_q + i], or with a sliding ``window`` (> 0) to the last ``window`` of those."""
    first = seq_kv - seq_q + 1                 # keys visible to the first query
    if not window or window >= seq_kv:
        return seq_q * first + seq_q * (seq_q - 1) / 2
    if window <= first:
        return float(seq_q * window)
    growing = window - first                   # queries that still see fewer than `window` keys
    return growing * first + growing * (growing - 1) / 2 + (seq_q - growing) * window


def attention(
    name: str, batch: int, heads: int, kv_heads: int, seq_q: int, seq_kv: int, head_dim: int, dtype: DType, *,
    causal: bool = True, layer: str = "", window: int = 0,
) -> Op:
    """Fused (flash-style) attention core. Prefill has ``seq_q == seq_kv``; decode has ``seq_q == 1``.

    Causal masking halves the useful work in prefill: pairs = Sq*(Sq+1)/2 when Sq == Skv. A sliding ``window``
    (Mistral, Gemma 2/3's local layers; causal only) keeps each query to its last ``window`` keys: the kernel
    skips the blocks outside it, and a decode step reads only those keys' K and V. Bytes are Q, K, V
    read once and O written once (flash attention never materialises the score matrix). Grouped-query
    attention shares each K/V head among ``heads / kv_heads`` query heads.
    """
    b = dtype.bytes
    if window and not causal:
        raise ConfigError(f"{name}: a sliding window needs causal attention")
    if causal and (seq_q > 1 or window):
        pairs = _causal_pairs(seq_q, seq_kv, window)
    else:
        pairs = seq_q * seq_kv
    flops = 2 * FMA_FLOPS * batch * heads * pairs * head_dim
    q = batch * heads * seq_q * head_dim
    kv_read = min(seq_kv, window) if window and seq_q == 1 else seq_kv
    kv = 2 * batch * kv_heads * kv_read * head_dim
    o = q
    lse = batch * heads * seq_q * 4  # fp32 log-sum-exp saved for the backward
    return Op(
        name=name, kind=OpKind.ATTENTION, dtype=dtype, flops=flops,
        bytes_read=(q + kv) * b, bytes_written=o * b,
        inputs=((batch, heads, seq_q, head_dim), (batch, kv_heads, seq_kv, head_dim), (batch, kv_heads, seq_kv, head_dim)),
        outputs=((batch, heads, seq_q, head_dim),),
        saved_bytes=(q + kv + o) * b + lse, layer=layer,
        attrs={"batch": batch, "heads": heads, "kv_heads": kv_heads, "seq_q": seq_q, "seq_kv": seq_kv,
               "head_dim": head_dim, "causal": causal, "form": "decode" if seq_q == 1 else "prefill", "fused": True,
               **({"window": window} if window else {})},
    )


def attention_unfused(
    name: str, batch: int, heads: int, kv_heads: int, seq_q: int, seq_kv: int, head_dim: int, dtype: DType, *,
    causal: bool = True, layer: str = "",
) -> list[Op]:
    """Eager attention as PyTorch runs it op by op (HuggingFace's ``eager_attention_forward``): QK^T (bmm), a
    scale (mul), the causal mask added (add, decoders only), softmax, PV (bmm). The score matrix round-trips
    memory at every step; the eager kernels compute the full square and mask it."""
    bh = batch * heads
    shape = (bh, seq_q, seq_kv)
    ops = [bmm(f"{name}.qk", bh, seq_q, seq_kv, head_dim, dtype, layer=layer),
           elementwise(f"{name}.scale", shape, dtype, fn="mul", layer=layer)]
    if causal and seq_q > 1:
        # the additive mask broadcasts over batch and heads (cache-resident); its backward is the identity
        ops.append(elementwise(f"{name}.mask", shape, dtype, fn="mask_add", layer=layer))
    ops += [softmax(f"{name}.softmax", shape, dtype, layer=layer),
            bmm(f"{name}.pv", bh, seq_q, head_dim, seq_kv, dtype, layer=layer)]
    del kv_heads  # K/V are expanded to all heads before the bmm
    return ops


def dropout(name: str, shape: Sequence[int], dtype: DType, *, layer: str = "") -> Op:
    """Training-mode dropout as eager PyTorch runs it (``native_dropout``): reads the input, writes the output
    and a one-byte keep mask, which it saves for the backward (``mask * dY / (1 - p)``)."""
    n = numel(shape)
    b = dtype.bytes
    return Op(name=name, kind=OpKind.ELEMENTWISE, dtype=dtype, flops=2.0 * n, bytes_read=n * b,
              bytes_written=n * b + n, inputs=(tuple(shape),), outputs=(tuple(shape),), saved_bytes=float(n),
              layer=layer, attrs={"fn": "dropout", "numel": n})


def gelu_tanh_eager(name: str, shape: Sequence[int], dtype: DType, *, layer: str = "",
                    high: DType | None = None) -> list[Op]:
    """The tanh-approximated GELU as eager PyTorch runs HuggingFace's ``NewGELUActivation`` ("gelu_new", GPT-2):
    ``0.5*x * (1 + tanh(sqrt(2/pi) * (x + 0.044715*x**3)))``, one kernel per pointwise step (8 kernels, two of
    them with two tensor inputs), against one fused kernel in ``elementwise(fn="gelu_tanh")``. Autograd keeps
    x for the cube's backward, tanh's output, and both factors of the last product: four tensors, not one.

    ``high`` (torch.autocast): ``pow`` is on autocast's fp32 list, so x is cast to ``high`` for the cube and
    every later step runs in ``high`` (type promotion), reading x and ``0.5*x`` at the narrower width."""
    # (step, function, tensor inputs, of which arrive in `dtype` under autocast, tensors saved for the backward)
    steps = [("half", "mul", 1, 1, 0), ("cube", "pow", 1, 0, 1), ("coef", "mul", 1, 0, 0), ("inner", "add", 2, 1, 0),
             ("scale", "mul", 1, 0, 0), ("tanh", "tanh", 1, 0, 1), ("one_plus", "add_scalar", 1, 0, 0),
             ("out", "mul", 2, 1, 2)]
    n = numel(shape)
    if high is None or high == dtype:
        return [elementwise(f"{name}.{step}", shape, dtype, fn=fn, n_inputs=k, layer=layer,
                            saved_bytes=float(saved * n * dtype.bytes)) for step, fn, k, _, saved in steps]
    ops: list[Op] = []
    for step, fn, k, low, _ in steps:
        dt = dtype if step == "half" else high
        if step == "cube":  # autocast's copy of x into the fp32-list dtype
            cast = elementwise(f"{name}.x_cast", shape, high, fn="copy", layer=layer, saved_bytes=0.0)
            ops.append(cast.with_(bytes_read=float(n * dtype.bytes), attrs={**cast.attrs, "cast_of": "activation"}))
        low = low if dt == high else 0
        # saved: the cube keeps its fp32 input, tanh its output, the product both factors (0.5*x is narrow)
        kept = {"cube": high.bytes, "tanh": high.bytes, "out": dtype.bytes + high.bytes}.get(step, 0)
        op = elementwise(f"{name}.{step}", shape, dt, fn=fn, n_inputs=k, layer=layer, saved_bytes=float(n * kept))
        ops.append(op.with_(bytes_read=op.bytes_read - low * n * (high.bytes - dtype.bytes)))
    return ops


def elementwise(
    name: str, shape: Sequence[int], dtype: DType, *, fn: str = "add", n_inputs: int = 1, layer: str = "",
    saved_bytes: float | None = None,
) -> Op:
    """Pointwise op over ``shape`` reading ``n_inputs`` tensors and writing one."""
    n = numel(shape)
    b = dtype.bytes
    flops_per = ACTIVATION_FLOPS.get(fn, 1)
    return Op(
        name=name, kind=OpKind.ELEMENTWISE, dtype=dtype, flops=flops_per * n,
        bytes_read=n_inputs * n * b, bytes_written=n * b,
        inputs=tuple(tuple(shape) for _ in range(n_inputs)), outputs=(tuple(shape),),
        saved_bytes=(n * b if fn in SAVES_FOR_BACKWARD else 0.0) if saved_bytes is None else saved_bytes,
        layer=layer, attrs={"fn": fn, "numel": n},
    )


def _norm(kind: OpKind, name: str, shape: Sequence[int], dtype: DType, params: int, flops_per: int, layer: str,
          saved_bytes: float | None) -> Op:
    n = numel(shape)
    b = dtype.bytes
    return Op(
        name=name, kind=kind, dtype=dtype, flops=flops_per * n,
        bytes_read=n * b + params * b, bytes_written=n * b,
        inputs=(tuple(shape),), outputs=(tuple(shape),), params=params,
        saved_bytes=n * b if saved_bytes is None else saved_bytes, layer=layer, attrs={"numel": n},
    )


def layer_norm(name: str, shape: Sequence[int], dtype: DType, *, layer: str = "", saved_bytes: float | None = None) -> Op:
    hidden = shape[-1]
    return _norm(OpKind.LAYER_NORM, name, shape, dtype, 2 * hidden, LAYER_NORM_FLOPS_PER_ELEMENT, layer, saved_bytes)


def rms_norm(name: str, shape: Sequence[int], dtype: DType, *, layer: str = "", saved_bytes: float | None = None) -> Op:
    hidden = shape[-1]
    return _norm(OpKind.RMS_NORM, name, shape, dtype, hidden, RMS_NORM_FLOPS_PER_ELEMENT, layer, saved_bytes)


def batch_norm(name: str, shape: Sequence[int], dtype: DType, *, layer: str = "", saved_bytes: float | None = None) -> Op:
    channels = shape[1]
    return _norm(OpKind.BATCH_NORM, name, shape, dtype, 2 * channels, BATCH_NORM_FLOPS_PER_ELEMENT, layer, saved_bytes)


def softmax(name: str, shape: Sequence[int], dtype: DType, *, layer: str = "", saved_bytes: float | None = None) -> Op:
    n = numel(shape)
    b = dtype.bytes
    return Op(
        name=name, kind=OpKind.SOFTMAX, dtype=dtype, flops=SOFTMAX_FLOPS_PER_ELEMENT * n,
        bytes_read=n * b, bytes_written=n * b, inputs=(tuple(shape),), outputs=(tuple(shape),),
        saved_bytes=n * b if saved_bytes is None else saved_bytes, layer=layer, attrs={"numel": n},
    )


def embedding(name: str, tokens: int, vocab: int, hidden: int, dtype: DType, *, layer: str = "") -> Op:
    """Table lookup: reads one row per token, writes the gathered rows. Parameters are the whole table."""
    b = dtype.bytes
    return Op(
        name=name, kind=OpKind.EMBEDDING, dtype=dtype, flops=0.0,
        bytes_read=tokens * hidden * b + tokens * 8, bytes_written=tokens * hidden * b,
        inputs=((tokens,), (vocab, hidden)), outputs=((tokens, hidden),), params=vocab * hidden,
        saved_bytes=tokens * 8, layer=layer, attrs={"tokens": tokens, "vocab": vocab, "hidden": hidden},
    )


def pool(name: str, batch: int, ch: int, hw: tuple[int, int], kernel: int, stride: int, padding: int, dtype: DType, *,
         fn: str = "max", layer: str = "", saved_bytes: float | None = None) -> tuple[Op, tuple[int, int]]:
    h, w = hw
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    b = dtype.bytes
    x, y = batch * ch * h * w, batch * ch * ho * wo
    op = Op(
        name=name, kind=OpKind.POOL, dtype=dtype, flops=float(y * kernel * kernel),
        bytes_read=x * b, bytes_written=y * b, inputs=((batch, ch, h, w),), outputs=((batch, ch, ho, wo),),
        saved_bytes=(x * b + (y * 8 if fn == "max" else 0)) if saved_bytes is None else saved_bytes,
        layer=layer, attrs={"fn": fn, "kernel": kernel, "stride": stride, "numel": x},
    )
    return op, (ho, wo)


def reduction(name: str, in_shape: Sequence[int], out_shape: Sequence[int], dtype: DType, *, fn: str = "mean",
              layer: str = "") -> Op:
    n, m = numel(in_shape), numel(out_shape)
    b = dtype.bytes
    return Op(
        name=name, kind=OpKind.REDUCTION, dtype=dtype, flops=float(n), bytes_read=n * b, bytes_written=m * b,
        inputs=(tuple(in_shape),), outputs=(tuple(out_shape),), saved_bytes=0.0, layer=layer,
        attrs={"fn": fn, "numel": n},
    )


def cross_entropy(name: str, rows: int, classes: int, dtype: DType, *, layer: str = "loss") -> Op:
    """Softmax + NLL over logits; treated as a softmax-class memory-bound op (logits read, probabilities kept)."""
    return softmax(name, (rows, classes), dtype, layer=layer)


def moe_router(name: str, tokens: int, experts: int, top_k: int, dtype: DType, *, layer: str = "") -> Op:
    """Softmax/top-k over router logits plus the token permutation bookkeeping."""
    b = dtype.bytes
    n = tokens * experts
    return Op(
        name=name, kind=OpKind.MOE_ROUTER, dtype=dtype, flops=float(SOFTMAX_FLOPS_PER_ELEMENT * n),
        bytes_read=n * b, bytes_written=tokens * top_k * (b + 8), inputs=((tokens, experts),),
        outputs=((tokens, top_k),), saved_bytes=n * b, layer=layer,
        attrs={"tokens": tokens, "experts": experts, "top_k": top_k, "numel": n},
    )
