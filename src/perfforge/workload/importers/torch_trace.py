"""PyTorch ``nn.Module`` -> Workload, traced on the meta device (no weights, no memory, no GPU).

The module runs once through ``torch.func.functional_call`` with meta copies of its parameters, buffers
and inputs (the user's module is never modified), under a ``TorchDispatchMode`` that sees every aten op.
Forward hooks on leaf modules name each op's layer and attribute each parameter to the first op of the
module that owns it (a tied parameter is counted once). Aten ops are mapped to perfforge op kinds with
the same FLOP and byte formulas as the zoo; view and metadata ops are free; anything else is listed in
``meta["unmodelled"]`` rather than silently dropped.

``amp`` traces the module as ``torch.autocast`` runs it: parameters stay fp32, and every aten op on
PyTorch's autocast lists (torch.amp documentation, "CUDA Ops that can autocast to float16" / "... to
float32") first casts its floating inputs, each cast recorded as the copy kernel it is. Casts of
parameters are made once per forward, as autocast caches them; everything else follows PyTorch's type
promotion on the meta tensors, so a GELU built from ``pow`` and ``tanh`` runs in fp32 after its ``pow``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op
from perfforge.workload.precision import AMP_DTYPES

aten = torch.ops.aten

_TORCH_DTYPES = {torch.float32: DType.FP32, torch.float16: DType.FP16, torch.bfloat16: DType.BF16,
                 torch.float64: DType.FP64, torch.int8: DType.INT8}
_TORCH_OF = {v: k for k, v in _TORCH_DTYPES.items()}
_TORCH_OF[DType.TF32] = torch.float32
_POINTWISE = {
    "relu": "relu", "relu_": "relu", "gelu": "gelu", "silu": "silu", "silu_": "silu", "tanh": "tanh",
    "sigmoid": "sigmoid", "add": "add", "add_": "add", "mul": "mul", "mul_": "mul", "sub": "add", "div": "mul",
    "neg": "add", "rsqrt": "mul", "pow": "mul", "exp": "mul", "where": "add", "masked_fill": "add",
    "dropout": "mul", "native_dropout": "mul", "clamp": "relu", "hardtanh": "relu", "hardtanh_": "relu",
    "div_": "mul", "sub_": "add", "bernoulli": "mul", "bernoulli_": "mul", "erf": "mul", "sqrt": "mul",
    "reciprocal": "mul", "log": "mul", "abs": "relu", "minimum": "add", "maximum": "add", "eq": "add",
    "ne": "add", "lt": "add", "gt": "add", "logical_not": "add", "bitwise_not": "add", "masked_fill_": "add",
    "gelu_": "gelu", "tanh_": "tanh", "sigmoid_": "sigmoid", "exp_": "mul", "rsub": "add",
}
# Ops that move or fill memory without arithmetic: a copy reads its input once and writes once; a fill
# only writes. They are real kernels, so they are costed (as "copy"/"fill" pointwise ops), not dropped.
_COPIES = {"clone", "copy_", "_to_copy", "lift_fresh_copy"}
_FILLS = {"fill_", "zero_", "zeros", "ones", "full", "zeros_like", "ones_like", "new_zeros", "new_ones", "full_like"}
# Metadata and allocation ops: no kernel does arithmetic or moves tensor data for them.
_FREE = {
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice",
    "select", "split", "split_with_sizes", "chunk", "unbind", "detach", "alias", "as_strided", "empty",
    "empty_like", "arange", "lift_fresh", "new_empty", "flatten", "sym_size", "sym_stride", "scalar_tensor",
    "_local_scalar_dense", "empty_strided", "expand_as", "view_as", "_reshape_alias", "unflatten",
}


# torch.autocast's CUDA op policy (torch.amp docs, "Autocast Op Reference"; the registrations in
# aten/src/ATen/autocast_mode.cpp), named as a TorchDispatchMode sees the ops after decomposition
# (``linear`` arrives as ``addmm``/``mm``, ``conv2d`` as ``convolution``, ``layer_norm`` as
# ``native_layer_norm``). Ops on neither list run in the promoted type of their inputs.
AMP_LOWER_PRECISION = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "addmv", "addr", "mv", "convolution", "_convolution", "prelu",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
})
AMP_FP32 = frozenset({
    "native_layer_norm", "layer_norm", "native_group_norm", "group_norm", "_softmax", "softmax", "_log_softmax",
    "log_softmax", "nll_loss_forward", "nll_loss2d_forward", "nll_loss_nd", "mse_loss", "l1_loss", "smooth_l1_loss",
    "binary_cross_entropy_with_logits", "kl_div", "pow", "exp", "expm1", "log", "log1p", "log2", "log10", "rsqrt",
    "reciprocal", "sum", "prod", "cumsum", "cumprod", "norm", "linalg_vector_norm", "softplus", "acos", "asin",
    "cosh", "sinh", "tan", "erfinv", "cdist", "dist", "renorm",
})


def _dtype(t: torch.Tensor) -> DType:
    return _TORCH_DTYPES.get(t.dtype, DType.FP32)


def _param_root(t: Any) -> str | None:
    """The parameter a meta tensor is (or is a view of), for autocast's per-forward cast cache."""
    return getattr(t, "_perfforge_param", None) if isinstance(t, torch.Tensor) else None


class _Recorder(TorchDispatchMode):
    def __init__(self, amp: torch.dtype | None = None) -> None:
        super().__init__()
        self.amp = amp
        self.amp_cache: dict[tuple[str, torch.dtype], torch.Tensor] = {}  # parameter casts, once per forward
        self.ops: list[Op] = []
        self.unmodelled: list[str] = []
        self.module_stack: list[tuple[str, int]] = []  # (qualified name, pending param count)
        self.suppress = 0  # >0 while a fused op recorded at the torch-function level runs its decomposition

    # -- layer bookkeeping ------------------------------------------------------------------
    def _layer(self) -> str:
        return self.module_stack[-1][0] if self.module_stack else ""

    def _take_params(self) -> int:
        if not self.module_stack:
            return 0
        name, pending = self.module_stack[-1]
        self.module_stack[-1] = (name, 0)
        return pending

    def _emit(self, op: Op, owns_params: bool) -> None:
        params = self._take_params() if owns_params else 0
        self.ops.append(op.with_(params=params, name=f"{self._layer() or 'op'}.{len(self.ops)}:{op.name}",
                                 layer=self._layer()))

    # -- autocast ---------------------------------------------------------------------------
    def cast(self, t: Any, dtype: torch.dtype) -> Any:
        """``t`` in ``dtype`` as autocast makes it: a floating tensor of another type is copied (one recorded
        kernel); a parameter is copied once per forward."""
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dtype == dtype or t.dtype == torch.float64:
            return t
        root = _param_root(t)
        if root is not None and (root, dtype) in self.amp_cache:
            return self.amp_cache[(root, dtype)]
        self.suppress += 1
        try:
            out = t.to(dtype)
        finally:
            self.suppress -= 1
        n = t.numel()
        op = L.elementwise("autocast", tuple(t.shape), _TORCH_DTYPES[dtype], fn="copy")
        self._emit(op.with_(bytes_read=float(n * t.element_size()), bytes_written=float(n * out.element_size()),
                            attrs={**op.attrs, "cast_of": root or "activation"}), owns_params=False)
        if root is not None:
            self.amp_cache[(root, dtype)] = out
        return out

    def _autocast(self, name: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        target = self.amp if name in AMP_LOWER_PRECISION else torch.float32 if name in AMP_FP32 else None
        if target is None:
            return args, kwargs
        return (tuple(self.cast(a, target) for a in args),
                {k: self.cast(v, target) for k, v in kwargs.items()})

    # -- aten dispatch ----------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        if self.amp is not None and not self.suppress:
            args, kwargs = self._autocast(name, args, kwargs)
        out = func(*args, **kwargs)
        if self.suppress:
            return out
        if name in _FREE:
            root = next((r for r in map(_param_root, args) if r is not None), None)
            if root is not None:  # a view of a parameter is still that parameter for the cast cache
                for o in (out if isinstance(out, (tuple, list)) else (out,)):
                    if isinstance(o, torch.Tensor):
                        o._perfforge_param = root
        try:
            first_out = out[0] if isinstance(out, (tuple, list)) and out else out
            self._record(name, args, kwargs, first_out)
        except (IndexError, TypeError, ValueError, AttributeError):
            self.unmodelled.append(name)
        return out

    def _record(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if name in _FREE:
            return
        if first is None and not (name in _FILLS and isinstance(out, torch.Tensor)):
            return
        if isinstance(out, torch.Tensor) and out.numel() <= 1 and (name in _POINTWISE or name in _COPIES
                                                                    or name in _FILLS):
            return  # scalar bookkeeping such as BatchNorm's num_batches_tracked += 1
        if name in _COPIES and isinstance(out, torch.Tensor):
            src = args[1] if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor) else first
            op = L.elementwise(name, tuple(out.shape), _dtype(out), fn="copy")
            if src.dtype != out.dtype:
                # a dtype conversion (HF's `logits.float()`): read at the source's width; its backward casts the
                # gradient back, unless the source (integer ids, masks) carries none
                attrs = {**op.attrs, "cast_of": _param_root(src) or "activation"}
                if not src.is_floating_point():
                    attrs["input_grad"] = False
                op = op.with_(bytes_read=float(out.numel() * src.element_size()), attrs=attrs)
            else:
                # clone / contiguous: autograd hands the gradient straight through, with no kernel
                op = op.with_(attrs={**op.attrs, "grad_passthrough": True})
            self._emit(op, owns_params=False)
            return
        if name in _FILLS and isinstance(out, torch.Tensor):
            self._emit(L.elementwise(name, tuple(out.shape), _dtype(out), fn="fill", n_inputs=0), owns_params=False)
            return
        dt = _dtype(first)
        if name in ("mm", "addmm"):
            a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
            m, k = a.shape
            n = b.shape[1]
            self._emit(L.linear(name, m, k, n, dt, bias=False), owns_params=True)
        elif name in ("bmm", "baddbmm"):
            a, b = (args[1], args[2]) if name == "baddbmm" else (args[0], args[1])
            bsz, m, k = a.shape
            owns = bool(self.module_stack and self.module_stack[-1][1])
            if owns:
                self._emit(L.linear(name, m, k, b.shape[2], dt, bias=False, batch=bsz), owns_params=True)
            else:
                self._emit(L.bmm(name, bsz, m, b.shape[2], k, dt), owns_params=False)
        elif name == "_grouped_mm":
            # torch._grouped_mm: transformers' MoE experts (its default "grouped_mm" experts implementation). With
            # ``offs``, the rows of a 2-D `a` go in groups to the experts' matrices `b` [E, K, N]; the split per
            # expert is data-dependent (unknown on the meta device), so the rows are spread evenly: the FLOPs,
            # 2 x rows x K x N, do not depend on it
            a, b = args[0], args[1]
            if a.dim() == 2 and b.dim() == 3:
                groups, k, n = b.shape
                op = L.linear(name, -(-a.shape[0] // groups), k, n, dt, bias=False, batch=groups)
            elif a.dim() == 3 and b.dim() == 3:
                groups, m, k = a.shape
                op = L.linear(name, m, k, b.shape[2], dt, bias=False, batch=groups)
            else:
                raise ValueError(f"_grouped_mm of a {a.dim()}-D and a {b.dim()}-D operand")
            self._emit(op, owns_params=True)
        elif name == "convolution":
            x, w = args[0], args[1]
            stride, padding, groups = args[3], args[4], args[8]
            op, _ = L.conv2d(name, x.shape[0], x.shape[1], (x.shape[2], x.shape[3]), w.shape[0], w.shape[2], dt,
                             stride=stride[0], padding=padding[0], groups=groups, bias=args[2] is not None)
            self._emit(op, owns_params=True)
        elif "scaled_dot_product" in name:
            q, k = args[0], args[1]
            causal = bool(kwargs.get("is_causal", args[4] if len(args) > 4 and isinstance(args[4], bool) else False))
            bsz, heads, sq, d = q.shape
            self._emit(L.attention(name, bsz, heads, k.shape[1], sq, k.shape[2], d, dt, causal=causal), False)
        elif name in ("native_layer_norm", "layer_norm"):
            self._emit(L.layer_norm(name, tuple(first.shape), dt), owns_params=True)
        elif name in ("_fused_rms_norm", "rms_norm"):
            self._emit(L.rms_norm(name, tuple(first.shape), dt), owns_params=True)
        elif "batch_norm" in name:
            self._emit(L.batch_norm(name, tuple(first.shape), dt), owns_params=True)
        elif name in ("_softmax", "softmax", "_log_softmax"):
            self._emit(L.softmax(name, tuple(first.shape), dt), owns_params=False)
        elif name == "embedding":
            weight, idx = args[0], args[1]
            self._emit(L.embedding(name, idx.numel(), weight.shape[0], weight.shape[1], _dtype(weight)), True)
        elif name in ("max_pool2d_with_indices", "avg_pool2d"):
            kernel, stride = args[1], (args[2] or args[1])
            padding = args[3] if len(args) > 3 else [0]
            op, _ = L.pool(name, first.shape[0], first.shape[1], (first.shape[2], first.shape[3]), kernel[0],
                           stride[0], padding[0], dt, fn="max" if "max" in name else "avg")
            self._emit(op, owns_params=False)
        elif name in ("_adaptive_avg_pool2d", "mean", "sum", "amax", "nll_loss_forward", "nll_loss2d_forward",
                      "argmax", "max", "min", "var_mean", "std_mean", "norm", "linalg_vector_norm"):
            self._emit(L.reduction(name, tuple(first.shape), tuple(out.shape), dt), owns_params=False)
        elif name in _POINTWISE:
            tensors = sum(isinstance(a, torch.Tensor) and a.numel() > 1 for a in args)
            # mixed inputs (autocast: fp32 + bf16) run in the promoted type, which is the output's
            pdt = _dtype(out) if isinstance(out, torch.Tensor) and out.is_floating_point() else dt
            self._emit(L.elementwise(name, tuple(out.shape), pdt, fn=_POINTWISE[name], n_inputs=max(1, tensors)),
                       owns_params=True)
        else:
            self.unmodelled.append(name)


_F = torch.nn.functional
# Convolutions check that input, weight and bias share a dtype before they reach aten ``convolution``, so
# autocast's casts for them are made here, where torch.autocast makes them (on ``conv2d`` and friends).
_AMP_CONVS = frozenset({_F.conv1d, _F.conv2d, _F.conv3d, _F.conv_transpose1d, _F.conv_transpose2d,
                        _F.conv_transpose3d})


class _FusedOps(TorchFunctionMode):
    """Records scaled_dot_product_attention as one fused op: on the meta device it decomposes into the math
    path (bmm, softmax, bmm), which is not what a GPU runs. Under autocast it also casts convolution
    inputs at the functional level (see ``_AMP_CONVS``)."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        rec = self.recorder
        if rec.amp is not None and func in _AMP_CONVS and not rec.suppress:
            args = (*(rec.cast(a, rec.amp) for a in args[:3]), *args[3:])
            kwargs = {k: rec.cast(v, rec.amp) if k in ("weight", "bias") else v for k, v in kwargs.items()}
            return func(*args, **kwargs)
        if func is not _F.scaled_dot_product_attention or rec.suppress:
            return func(*args, **kwargs)
        if rec.amp is not None:  # scaled_dot_product_attention is on autocast's lower-precision list
            args = (*(rec.cast(a, rec.amp) for a in args[:3]), *args[3:])
        q, k = args[0], args[1]
        causal = bool(kwargs.get("is_causal", args[4] if len(args) > 4 else False))
        bsz, heads, sq, d = q.shape
        rec._emit(L.attention("sdpa", bsz, heads, k.shape[1], sq, k.shape[2], d, _dtype(q), causal=causal),
                  owns_params=False)
        rec.suppress += 1
        try:
            return func(*args, **kwargs)
        finally:
            rec.suppress -= 1


def trace_module(module: torch.nn.Module, *example_inputs: Any, name: str | None = None,
                 dtype: DType | str | None = None, batch: int | None = None, seq: int | None = None,
                 example_kwargs: dict[str, Any] | None = None, amp: DType | str | None = None) -> Workload:
    """Trace ``module(*example_inputs, **example_kwargs)`` on the meta device into a forward Workload.

    ``dtype`` casts floating parameters and inputs first (``module.half()``); ``amp`` ("fp16" or "bf16")
    instead keeps them as they are and traces the forward as ``torch.autocast`` in that dtype runs it.
    """
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"from_torch expects an nn.Module, got {type(module).__name__}")
    amp_dtype: DType | None = None
    if amp is not None:
        amp_dtype = DType.parse(amp)
        if amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"amp: autocast runs in fp16 or bf16, not '{amp_dtype.value}' (allowed: fp16, bf16)")
        if dtype is not None:
            raise ConfigError("pass either dtype (cast the module, like module.half()) or amp (torch.autocast), not both")
    target = _TORCH_OF.get(DType.parse(dtype)) if dtype else None

    def to_meta(x: Any) -> Any:
        if not isinstance(x, torch.Tensor):
            return x
        # like model.half(): floating tensors take the requested dtype, integer ones (token ids) stay
        cast = target if (target is not None and x.is_floating_point()) else x.dtype
        return torch.empty_like(x, device="meta", dtype=cast)

    state: dict[str, torch.Tensor] = {}
    for pname, p in module.named_parameters():
        state[pname] = to_meta(p)
        state[pname]._perfforge_param = pname  # autocast caches the casts of parameters
    for bname, b in module.named_buffers():
        state[bname] = to_meta(b)
    inputs = tuple(to_meta(x) for x in example_inputs)
    recorder = _Recorder(_TORCH_OF[amp_dtype] if amp_dtype is not None else None)
    seen: set[int] = set()
    hooks = []
    for qname, sub in module.named_modules():
        own = [p for p in sub.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        count = sum(p.numel() for p in own)

        def pre(_m: Any, _a: Any, qname: str = qname, count: int = count) -> None:
            recorder.module_stack.append((qname, count))

        def post(_m: Any, _a: Any, _o: Any) -> None:
            recorder.module_stack.pop()

        hooks.append(sub.register_forward_pre_hook(pre))
        hooks.append(sub.register_forward_hook(post))
    try:
        with torch.no_grad(), recorder, _FusedOps(recorder):
            kw = {k: to_meta(v) for k, v in (example_kwargs or {}).items()}
            torch.func.functional_call(module, state, inputs, kw, tie_weights=True, strict=False)
    finally:
        for h in hooks:
            h.remove()
    total = sum(p.numel() for p in module.parameters())
    attributed = sum(op.params for op in recorder.ops)
    first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    ops = list(recorder.ops)
    # the data needs no gradient: neither the first op nor, under autocast, the casts of the inputs before it
    # (the casts of its weights keep theirs: their backward turns the weight gradient back into fp32)
    for i, op in enumerate(ops):
        if op.attrs.get("cast_of") not in (None, "activation"):
            continue
        ops[i] = op.with_(attrs={**op.attrs, "input_grad": False})
        if "cast_of" not in op.attrs:
            break
    ops = tuple(ops)
    # the workload's dtype is its compute dtype: under autocast, the dtype its GEMMs run in
    wdtype = amp_dtype or (DType.parse(dtype) if dtype else (ops[0].dtype if ops else DType.FP32))
    return Workload(
        name=name or type(module).__name__, ops=ops, dtype=wdtype,
        batch=batch or (int(first.shape[0]) if first is not None and first.dim() else 1),
        seq=seq or (int(first.shape[1]) if first is not None and first.dim() == 2 else 1),
        meta={"family": "torch", "unmodelled": sorted(set(recorder.unmodelled)), "kv_layers": 0,
              **({"amp": amp_dtype.value} if amp_dtype is not None else {})},
        extra_params=total - attributed,
    )


