"""Operator suites: shape grids as data, one ``Case`` per (op, dtype, shape).

FLOPs and minimum bytes are analytical counts (matmul 2*m*n*k; elementwise ops: one pass
over inputs and outputs). torch is imported only inside ``setup`` closures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from perfforge.profiling.timing import Case, TimingPlan

ELEM_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "tf32": 4}
SUITES = ("tiny", "smoke", "standard")

# ---- shape grids --------------------------------------------------------------------------
_SQUARE = [64, 128, 256, 512, 1024, 2048, 4096, 8192]
_ODD = [(1000, 1000, 1000), (1023, 1023, 1023), (3000, 3000, 3000), (777, 1531, 2053)]
# (n, k) of GPT-2 small and Llama-2-7B linear layers (activation [m, k] x weight [k, n]).
_LLM_NK = [(2304, 768), (3072, 768), (768, 3072), (50257, 768),
           (12288, 4096), (4096, 4096), (11008, 4096), (4096, 11008)]
MATMUL_GRID: dict[str, list[tuple[int, int, int]]] = {
    "tiny": [(16, 16, 16), (33, 17, 9)],
    "smoke": [(256, 256, 256), (1024, 1024, 1024), (1, 4096, 4096), (2048, 3072, 768)],
    "standard": [(s, s, s) for s in _SQUARE] + _ODD,
}
# Decode (m <= 32) and prefill GEMMs of real LLM layers, half precision only.
LLM_MATMUL_GRID: dict[str, list[tuple[int, int, int]]] = {
    "tiny": [], "smoke": [],
    "standard": [(m, n, k) for m in (1, 8, 16, 32, 512, 2048, 8192) for n, k in _LLM_NK],
}
MATMUL_DTYPES = {"tiny": ("fp32",), "smoke": ("fp16", "bf16", "tf32"),
                 "standard": ("fp16", "bf16", "fp32", "tf32")}
BMM_GRID = {"tiny": [(2, 8, 8, 8)], "smoke": [(96, 512, 512, 64)],
            "standard": [(96, 512, 512, 64), (96, 512, 64, 512), (256, 1024, 1024, 128),
                         (512, 128, 128, 128), (32, 4096, 4096, 128)]}
LINEAR_GRID = {"tiny": [(8, 16, 32)], "smoke": [(8192, 3072, 768)],
               "standard": [(8192, 2304, 768), (8192, 3072, 768), (8192, 768, 3072),
                            (4096, 4096, 4096), (16, 4096, 4096), (4096, 11008, 4096)]}
HALF_DTYPES = {"tiny": ("fp32",), "smoke": ("fp16",), "standard": ("fp16", "bf16")}

# ResNet-50 v1.5 (torchvision): distinct convs as (in_ch, out_ch, kernel, stride, padding, hw_in)
# with hw_in for a 224x224 input; the 3x3 conv carries the stride in downsampling blocks.
RESNET50_CONVS: list[tuple[int, int, int, int, int, int]] = [
    (3, 64, 7, 2, 3, 224),
    (64, 64, 1, 1, 0, 56), (64, 64, 3, 1, 1, 56), (64, 256, 1, 1, 0, 56), (256, 64, 1, 1, 0, 56),
    (256, 128, 1, 1, 0, 56), (128, 128, 3, 2, 1, 56), (128, 512, 1, 1, 0, 28),
    (256, 512, 1, 2, 0, 56), (512, 128, 1, 1, 0, 28), (128, 128, 3, 1, 1, 28),
    (512, 256, 1, 1, 0, 28), (256, 256, 3, 2, 1, 28), (256, 1024, 1, 1, 0, 14),
    (512, 1024, 1, 2, 0, 28), (1024, 256, 1, 1, 0, 14), (256, 256, 3, 1, 1, 14),
    (1024, 512, 1, 1, 0, 14), (512, 512, 3, 2, 1, 14), (512, 2048, 1, 1, 0, 7),
    (1024, 2048, 1, 2, 0, 14), (2048, 512, 1, 1, 0, 7), (512, 512, 3, 1, 1, 7),
]
CONV_GRID = {"tiny": ([(4, 8, 3, 1, 1, 8)], (2,), ("fp32",)),
             "smoke": (RESNET50_CONVS[:3], (32,), ("fp16",)),
             "standard": (RESNET50_CONVS, (32, 128, 256), ("fp16", "fp32"))}
# The backward of the same convs: input gradient (dgrad) and weight gradient (wgrad), as a training step's
# autograd runs them (aten convolution_backward with one output each), at training batch sizes.
CONV_BACKWARD_GRID = {"tiny": ([(4, 8, 3, 1, 1, 8)], (2,), ("fp32",)),
                      "smoke": (RESNET50_CONVS[1:3], (32,), ("fp16",)),
                      "standard": (RESNET50_CONVS, (128, 256), ("fp16", "fp32"))}
# (batch, seq) for causal prefill; (batch, kv_len, kv_heads) for decode; heads 32, head_dim 128.
PREFILL = {"tiny": [(1, 16)], "smoke": [(1, 1024)],
           "standard": [(b, s) for b in (1, 4) for s in (128, 256, 512, 1024, 2048, 4096)]}
DECODE = {"tiny": [(2, 32, 2)], "smoke": [(8, 2048, 32)],
          "standard": [(b, kv, 32) for b in (1, 8, 32, 64) for kv in (128, 512, 2048, 8192)]
          + [(b, kv, 8) for b in (1, 32) for kv in (2048, 8192)]}
ATTN_HEADS = {"tiny": (4, 16), "smoke": (32, 128), "standard": (32, 128)}
ROWCOLS = {"tiny": [(8, 32)], "smoke": [(8192, 1024)],
           "standard": [(8192, 768), (8192, 1024), (4096, 4096), (16384, 4096), (8192, 8192),
                        (65536, 1024)]}
NUMELS = {"tiny": [1024], "smoke": [1 << 24], "standard": [1 << 20, 1 << 24, 1 << 27]}
EMBEDDING = {"tiny": [(100, 16, 32)], "smoke": [(50257, 768, 8192)],
             "standard": [(50257, 768, 4096), (50257, 768, 32768), (50257, 1280, 32768),
                          (128256, 4096, 8192)]}  # (vocab, dim, tokens)
ELEMWISE_DTYPES = {"tiny": ("fp32",), "smoke": ("fp16", "fp32"),
                   "standard": ("fp16", "bf16", "fp32")}
PLANS = {"tiny": TimingPlan(warmup=1, repeats=3, max_time_s=0.2),
         "smoke": TimingPlan(warmup=3, repeats=10, max_time_s=0.5),
         "standard": TimingPlan(warmup=3, repeats=20, max_time_s=1.0)}
CEILING_PLANS = {"tiny": PLANS["tiny"], "smoke": TimingPlan(warmup=3, repeats=10, max_time_s=1.0),
                 "standard": TimingPlan(warmup=5, repeats=30, max_time_s=2.0)}


# ---- helpers ------------------------------------------------------------------------------
def torch_dtype(name: str) -> Any:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(name, torch.float32)


def set_precision_flags(dtype: str) -> None:
    """"fp32" is strict fp32 and "tf32" enables TF32 math, for both matmul and cuDNN; fp16 and
    bf16 cases get PyTorch's defaults (matmul TF32 off, cuDNN TF32 on) for their fp32 parts."""
    import torch

    tf32 = dtype == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32 or dtype not in ("fp32", "tf32")


Setup = Callable[[Any], tuple[Callable[[], object], dict[str, Any]]]


def _case(op: str, dtype: str, params: dict[str, Any], setup: Setup, flop: float | None,
          nbytes: float | None, suite: str, group: str = "kernels",
          plan: TimingPlan | None = None, flush: bool = True) -> Case:
    return Case(kind="kernel", group=group, op=op, dtype=dtype, params=params, setup=setup,
                flop=flop, bytes=nbytes, l2_flush=flush, plan=plan or PLANS[suite])


def _rand(dev: Any, dtype: str, *shape: int) -> Any:
    import torch

    return torch.randn(*shape, device=dev, dtype=torch_dtype(dtype))


def matmul_case(m: int, n: int, k: int, dtype: str, suite: str = "standard",
                op: str = "matmul", group: str = "kernels",
                plan: TimingPlan | None = None, flush: bool = True) -> Case:
    """``torch.matmul([m,k], [k,n])``: flop 2*m*n*k, bytes (mk + kn + mn) * elem."""
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch

        a, b = _rand(dev, dtype, m, k), _rand(dev, dtype, k, n)
        return (lambda: torch.matmul(a, b)), {}

    e = ELEM_BYTES[dtype]
    return _case(op, dtype, {"m": m, "n": n, "k": k}, setup, 2.0 * m * n * k,
                 float((m * k + k * n + m * n) * e), suite, group, plan, flush)


def _bmm(b: int, m: int, n: int, k: int, dtype: str, suite: str) -> Case:
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch

        x, y = _rand(dev, dtype, b, m, k), _rand(dev, dtype, b, k, n)
        return (lambda: torch.bmm(x, y)), {}

    return _case("bmm", dtype, {"b": b, "m": m, "n": n, "k": k}, setup, 2.0 * b * m * n * k,
                 float(b * (m * k + k * n + m * n) * ELEM_BYTES[dtype]), suite)


def _linear(m: int, n: int, k: int, dtype: str, suite: str) -> Case:
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch.nn.functional as F

        x, w, bias = _rand(dev, dtype, m, k), _rand(dev, dtype, n, k), _rand(dev, dtype, n)
        return (lambda: F.linear(x, w, bias)), {}

    return _case("linear", dtype, {"m": m, "n": n, "k": k, "bias": True}, setup,
                 2.0 * m * n * k + m * n,
                 float((m * k + n * k + n + m * n) * ELEM_BYTES[dtype]), suite)


def _conv(spec: tuple[int, int, int, int, int, int], batch: int, dtype: str, suite: str) -> Case:
    cin, cout, ks, stride, pad, hw = spec
    channels_last = dtype in ("fp16", "bf16")
    hout = (hw + 2 * pad - ks) // stride + 1

    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = _rand(dev, dtype, batch, cin, hw, hw).contiguous(memory_format=fmt)
        w = _rand(dev, dtype, cout, cin, ks, ks).contiguous(memory_format=fmt)
        return (lambda: F.conv2d(x, w, None, stride, pad)), {}

    params = {"batch": batch, "in_ch": cin, "out_ch": cout, "h": hw, "w": hw, "kernel": ks,
              "stride": stride, "padding": pad, "channels_last": channels_last}
    flop = 2.0 * batch * cout * hout * hout * cin * ks * ks
    nbytes = (batch * cin * hw * hw + cout * cin * ks * ks + batch * cout * hout * hout)
    return _case("conv2d", dtype, params, setup, flop, float(nbytes * ELEM_BYTES[dtype]), suite)


def _conv_backward(which: str, spec: tuple[int, int, int, int, int, int], batch: int, dtype: str,
                   suite: str) -> Case:
    """``conv2d_dgrad`` (dX from dY and W) or ``conv2d_wgrad`` (dW from dY and X) of the forward conv ``spec``;
    each has the forward's FLOPs."""
    cin, cout, ks, stride, pad, hw = spec
    channels_last = dtype in ("fp16", "bf16")
    hout = (hw + 2 * pad - ks) // stride + 1
    dgrad = which == "dgrad"

    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = _rand(dev, dtype, batch, cin, hw, hw).contiguous(memory_format=fmt)
        w = _rand(dev, dtype, cout, cin, ks, ks).contiguous(memory_format=fmt)
        dy = _rand(dev, dtype, batch, cout, hout, hout).contiguous(memory_format=fmt)
        mask = [dgrad, not dgrad, False]
        return (lambda: torch.ops.aten.convolution_backward(dy, x, w, None, [stride, stride], [pad, pad], [1, 1],
                                                            False, [0, 0], 1, mask)), {}

    params = {"batch": batch, "in_ch": cin, "out_ch": cout, "h": hw, "w": hw, "kernel": ks,
              "stride": stride, "padding": pad, "channels_last": channels_last}
    flop = 2.0 * batch * cout * hout * hout * cin * ks * ks
    # each reads two of dY, W, X and writes the third: every tensor is touched once either way
    nbytes = batch * cin * hw * hw + cout * cin * ks * ks + batch * cout * hout * hout
    return _case(f"conv2d_{which}", dtype, params, setup, flop, float(nbytes * ELEM_BYTES[dtype]), suite)


def _sdpa(batch: int, heads: int, kv_heads: int, sq: int, skv: int, hd: int, causal: bool,
          dtype: str, suite: str) -> Case:
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch.nn.functional as F

        q = _rand(dev, dtype, batch, heads, sq, hd)
        k, v = _rand(dev, dtype, batch, kv_heads, skv, hd), _rand(dev, dtype, batch, kv_heads, skv, hd)
        kw: dict[str, Any] = {"enable_gqa": True} if kv_heads != heads else {}
        return (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)), {}

    params = {"batch": batch, "heads": heads, "kv_heads": kv_heads, "seq_q": sq, "seq_kv": skv,
              "head_dim": hd, "causal": causal}
    pairs = sq * skv - (sq * (sq - 1) // 2 if causal and sq == skv else 0)  # visible (q, kv)
    flop = 4.0 * batch * heads * pairs * hd
    nbytes = (2 * batch * heads * sq * hd + 2 * batch * kv_heads * skv * hd) * ELEM_BYTES[dtype]
    return _case("sdpa", dtype, params, setup, flop, float(nbytes), suite)


def _rowwise(op: str, rows: int, cols: int, dtype: str, suite: str) -> Case:
    flop_per = {"layer_norm": 8, "rms_norm": 4, "softmax": 5}[op]

    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        x = _rand(dev, dtype, rows, cols)
        w, b = _rand(dev, dtype, cols), _rand(dev, dtype, cols)
        if op == "layer_norm":
            return (lambda: F.layer_norm(x, (cols,), w, b)), {}
        if op == "softmax":
            return (lambda: torch.softmax(x, dim=-1)), {}
        if hasattr(F, "rms_norm"):
            return (lambda: F.rms_norm(x, (cols,), w)), {"impl": "F.rms_norm"}
        return (lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w), {"impl": "manual"}

    nbytes = (2 * rows * cols + (2 * cols if op != "softmax" else 0)) * ELEM_BYTES[dtype]
    return _case(op, dtype, {"rows": rows, "cols": cols}, setup, float(flop_per * rows * cols),
                 float(nbytes), suite)


def _elementwise(op: str, numel: int, dtype: str, suite: str) -> Case:
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        x, y = _rand(dev, dtype, numel), _rand(dev, dtype, numel)
        fns = {"gelu": lambda: F.gelu(x), "add": lambda: torch.add(x, y),
               "mul": lambda: torch.mul(x, y)}
        return fns[op], {}

    tensors = 2 if op == "gelu" else 3
    flop = {"gelu": 8, "add": 1, "mul": 1}[op] * numel
    return _case(op, dtype, {"numel": numel}, setup, float(flop),
                 float(tensors * numel * ELEM_BYTES[dtype]), suite)


def _embedding(vocab: int, dim: int, tokens: int, dtype: str, suite: str) -> Case:
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        table = _rand(dev, dtype, vocab, dim)
        idx = torch.randint(0, vocab, (tokens,), device=dev)
        return (lambda: F.embedding(idx, table)), {}

    nbytes = 2 * tokens * dim * ELEM_BYTES[dtype] + 8 * tokens
    return _case("embedding", dtype, {"vocab": vocab, "dim": dim, "tokens": tokens}, setup,
                 None, float(nbytes), suite)


def _memcpy(direction: str, nbytes: int, suite: str) -> Case:
    def setup(dev: Any) -> tuple[Callable[[], object], dict[str, Any]]:
        import torch

        n = nbytes // 4
        pin = getattr(dev, "type", "cpu") == "cuda"
        src_dev = dev if direction in ("d2d", "d2h") else "cpu"
        dst_dev = dev if direction in ("d2d", "h2d") else "cpu"
        src = torch.empty(n, dtype=torch.float32, device=src_dev, pin_memory=pin and src_dev == "cpu")
        dst = torch.empty(n, dtype=torch.float32, device=dst_dev, pin_memory=pin and dst_dev == "cpu")
        src.fill_(1.0)
        return (lambda: dst.copy_(src, non_blocking=True)), {"pinned": pin and direction != "d2d"}

    moved = 2 * nbytes if direction == "d2d" else nbytes  # d2d reads and writes device memory
    return _case(f"memcpy_{direction}", "fp32", {"bytes": nbytes}, setup, None, float(moved),
                 suite, group="ceilings", plan=CEILING_PLANS[suite], flush=False)


# ---- random shapes for adapting the learned kernel model ---------------------------------------
# ``perfforge profile --only shapes``: seeded random GEMM, norm/softmax and pointwise shapes, the kind of kernels
# the learned model's few-shot experiment adds per op class (`perfforge learn evaluate --split few-shot`: about 100
# per class halves a new GPU's per-kernel GEMM error). Dimensions are log-uniform; a shape whose FLOPs or largest
# tensor exceed the suite's caps is drawn again, so no case runs out of memory or for seconds.
SHAPES_SEED = 20261127
SHAPES_PER_OP = {"tiny": {"bmm": 2, "linear": 2, "layer_norm": 1, "softmax": 1, "gelu": 1, "add": 1, "mul": 1},
                 "smoke": {"bmm": 10, "linear": 10, "layer_norm": 5, "softmax": 5, "gelu": 4, "add": 3, "mul": 3},
                 "standard": {"bmm": 100, "linear": 100, "layer_norm": 50, "softmax": 50, "gelu": 34, "add": 33,
                              "mul": 33}}
SHAPES_DTYPES = {"tiny": ("fp32",), "smoke": ("fp16",), "standard": ("fp16", "fp32")}
# (smallest, largest) of each dimension, largest tensor in elements, largest FLOP count
SHAPES_RANGES: dict[str, dict[str, Any]] = {
    "tiny": {"gemm": (4, 32), "batch": (1, 4), "tokens": (1, 64), "rows": (1, 64), "cols": (8, 64),
             "numel": (64, 4096), "max_elems": 1 << 14, "max_flop": 1 << 20},
    "smoke": {"gemm": (32, 4096), "batch": (1, 128), "tokens": (1, 16384), "rows": (1, 65536), "cols": (64, 16384),
              "numel": (1 << 12, 1 << 27), "max_elems": 1 << 27, "max_flop": 1 << 36},
}
SHAPES_RANGES["standard"] = SHAPES_RANGES["smoke"]


def _log_uniform(rng: Any, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def random_shape_cases(suite: str, seed: int = SHAPES_SEED) -> list[Case]:
    """The ``shapes`` group: the same shapes for a suite and seed on every machine, so an interrupted run
    resumes (cases are keyed by op, dtype and shape)."""
    import random

    rng = random.Random(f"{seed}/{suite}")
    r = SHAPES_RANGES[suite]
    per = SHAPES_PER_OP[suite]
    dims = lambda: _log_uniform(rng, *r["gemm"])  # noqa: E731
    shapes: dict[str, list[tuple[int, ...]]] = {op: [] for op in per}
    while len(shapes["bmm"]) < per["bmm"]:
        b, m, n, k = _log_uniform(rng, *r["batch"]), dims(), dims(), dims()
        if 2 * b * m * n * k <= r["max_flop"] and b * max(m * k, k * n, m * n) <= r["max_elems"]:
            shapes["bmm"].append((b, m, n, k))
    while len(shapes["linear"]) < per["linear"]:
        m, n, k = _log_uniform(rng, *r["tokens"]), dims(), dims()
        if 2 * m * n * k <= r["max_flop"] and max(m * k, n * k, m * n) <= r["max_elems"]:
            shapes["linear"].append((m, n, k))
    for op in ("layer_norm", "softmax"):
        while len(shapes[op]) < per[op]:
            rows, cols = _log_uniform(rng, *r["rows"]), _log_uniform(rng, *r["cols"])
            if rows * cols <= r["max_elems"]:
                shapes[op].append((rows, cols))
    for op in ("gelu", "add", "mul"):
        shapes[op] = [(_log_uniform(rng, *r["numel"]),) for _ in range(per[op])]
    cases: list[Case] = []
    for dt in SHAPES_DTYPES[suite]:
        cases += [_bmm(*s, dt, suite) for s in shapes["bmm"]]
        cases += [_linear(*s, dt, suite) for s in shapes["linear"]]
        cases += [_rowwise(op, *s, dt, suite) for op in ("layer_norm", "softmax") for s in shapes[op]]
        cases += [_elementwise(op, *s, dt, suite) for op in ("gelu", "add", "mul") for s in shapes[op]]
    return [dataclasses.replace(c, group="shapes") for c in cases]


# ---- suites -------------------------------------------------------------------------------
def ceiling_cases(suite: str, device_type: str = "cuda") -> list[Case]:
    """Big-GEMM peak per dtype plus copy bandwidth: the roofline a predictor is held to."""
    big = {"tiny": 64, "smoke": 4096, "standard": 8192}[suite]
    size = {"tiny": 1 << 20, "smoke": 1 << 28, "standard": 1 << 30}[suite]
    dtypes = ("fp32",) if suite == "tiny" else ("fp16", "bf16", "tf32", "fp32")
    cases = [matmul_case(big, big, big, dt, suite, op="gemm_peak", group="ceilings",
                         plan=CEILING_PLANS[suite], flush=False) for dt in dtypes]
    cases.append(_memcpy("d2d", size, suite))
    if device_type == "cuda":
        cases += [_memcpy("h2d", min(size, 1 << 28), suite), _memcpy("d2h", min(size, 1 << 28), suite)]
    return cases


def _each(suite: str, dtypes: dict[str, tuple[str, ...]], grid: Iterable[Any],
          make: Callable[..., Case]) -> list[Case]:
    return [make(*shape, dt, suite) for dt in dtypes[suite] for shape in grid]


def kernel_cases(suite: str) -> list[Case]:
    """Operator cases in priority order: GEMMs, attention, row/elementwise ops, then convs and their backward."""
    cases = _each(suite, MATMUL_DTYPES, MATMUL_GRID[suite], matmul_case)
    cases += _each(suite, HALF_DTYPES, LLM_MATMUL_GRID[suite], matmul_case)
    cases += _each(suite, HALF_DTYPES, LINEAR_GRID[suite], _linear)
    cases += _each(suite, MATMUL_DTYPES, BMM_GRID[suite], _bmm)
    heads, hd = ATTN_HEADS[suite]
    for dt in HALF_DTYPES[suite]:
        cases += [_sdpa(b, heads, heads, s, s, hd, True, dt, suite) for b, s in PREFILL[suite]]
        cases += [_sdpa(b, heads, min(kvh, heads), 1, kv, hd, False, dt, suite)
                  for b, kv, kvh in DECODE[suite]]
    for op in ("layer_norm", "rms_norm", "softmax"):
        cases += [_rowwise(op, r, c, dt, suite) for dt in ELEMWISE_DTYPES[suite]
                  for r, c in ROWCOLS[suite]]
    for op in ("gelu", "add", "mul"):
        cases += [_elementwise(op, n, dt, suite) for dt in ELEMWISE_DTYPES[suite]
                  for n in NUMELS[suite]]
    cases += _each(suite, HALF_DTYPES, EMBEDDING[suite], _embedding)
    convs, batches, conv_dtypes = CONV_GRID[suite]
    cases += [_conv(spec, b, dt, suite) for dt in conv_dtypes for b in batches for spec in convs]
    convs, batches, conv_dtypes = CONV_BACKWARD_GRID[suite]
    cases += [_conv_backward(which, spec, b, dt, suite) for which in ("dgrad", "wgrad") for dt in conv_dtypes
              for b in batches for spec in convs]
    return cases
