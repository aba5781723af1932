"""Precision policies for the zoo's builders: a model cast to one dtype, or mixed precision as torch.autocast runs it.

- **Pure** (``amp=False``): every tensor and parameter in the compute dtype, as after ``model.half()``; the
  optimizer keeps fp32 master weights (the Megatron-LM / ZeRO convention of ``perfforge.workload.optimizer``).
- **AMP** (``amp=True``): an fp32 model run under ``torch.autocast`` in fp16 or bf16, PyTorch's usual training
  recipe. The rules are autocast's CUDA op lists (torch.amp documentation, "CUDA Ops that can autocast to
  float16" and "CUDA Ops that can autocast to float32") and PyTorch's type promotion:
  - parameters, their gradients and the optimizer's weights are fp32 (no separate master copy);
  - matmuls, convolutions and attention run in the compute dtype. They cast an fp32 input first (one copy
    kernel) and their weights once per forward (autocast's weight cache); the backward casts each weight
    gradient back to fp32;
  - layer/RMS norms, softmax and the loss are on the fp32 list;
  - everything else follows its inputs: the embeddings' outputs are fp32 (fp32 tables), and so is the
    residual stream and whatever else mixes fp32 with lower precision (type promotion).

``perfforge.from_torch(module, amp=...)`` reaches the same graph by tracing a real module under these rules;
the builders write it down for the zoo's architectures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.op import Op

AMP_DTYPES = (DType.FP16, DType.BF16)


@dataclass(frozen=True, slots=True)
class Precision:
    """``compute``: the dtype GEMMs, convolutions and attention run in. ``amp``: torch.autocast over fp32."""

    compute: DType
    amp: bool = False

    def __post_init__(self) -> None:
        if self.amp and self.compute not in AMP_DTYPES:
            raise ConfigError(f"amp: autocast runs in fp16 or bf16, not '{self.compute.value}' "
                              f"(allowed dtypes with amp: {', '.join(d.value for d in AMP_DTYPES)})")

    @property
    def high(self) -> DType:
        """The dtype of autocast's fp32-list ops (norms, softmax, loss), of the embeddings' outputs, of the
        residual stream and of the parameters: fp32 under AMP, the compute dtype otherwise."""
        return DType.FP32 if self.amp else self.compute

    @property
    def meta(self) -> dict[str, str]:
        """What a Workload's ``meta`` records (``amp``: the autocast dtype), as ``from_torch(amp=...)`` does."""
        return {"amp": self.compute.value} if self.amp else {}

    def cast(self, name: str, shape: Sequence[int], src: DType, dst: DType, *, layer: str = "") -> list[Op]:
        """The copy kernel that converts an activation from ``src`` to ``dst`` (none when they agree). Its
        backward converts the gradient back (``perfforge.workload.backward``)."""
        if src == dst:
            return []
        n = L.numel(shape)
        op = L.elementwise(name, shape, dst, fn="copy", layer=layer)
        return [op.with_(bytes_read=float(n * src.bytes), bytes_written=float(n * dst.bytes), saved_bytes=0.0,
                         attrs={**op.attrs, "cast_of": "activation"})]

    def weight_cast(self, gemm: Op, numel: int | None = None) -> list[Op]:
        """Under AMP, the once-per-forward copies of ``gemm``'s fp32 weight and bias into the compute dtype (one
        kernel each: autocast casts every tensor argument on its own). ``numel``: the weight's elements when the
        GEMM borrows a tied table (default: its own ``batch * n * k``); whatever else it owns is its bias. The
        GEMM's backward keeps the copies alive, so they count as saved activation memory."""
        if not self.amp:
            return []
        a = gemm.attrs
        own_weight = a.get("batch", 1) * a["n"] * a["k"]
        weight = own_weight if numel is None else numel
        bias = gemm.params - (own_weight if numel is None else 0)
        out = []
        for part, n in (("weight", weight), ("bias", bias)):
            if n <= 0:
                continue
            op = L.elementwise(f"{gemm.name}.{part}_cast", (n,), self.compute, fn="copy", layer=gemm.layer)
            out.append(op.with_(bytes_read=float(n * DType.FP32.bytes), bytes_written=float(n * self.compute.bytes),
                                saved_bytes=float(n * self.compute.bytes), attrs={**op.attrs, "cast_of": gemm.name}))
        return out

    def gemm(self, gemm: Op, input_dtype: DType, *, weight_numel: int | None = None,
             data_input: bool = False) -> list[Op]:
        """A matmul or convolution with what autocast launches before it: the cast of its activation input
        (when that arrives in another dtype) and of its weight. ``gemm`` is built in the compute dtype.
        ``data_input``: the input is the data (images), so neither the GEMM nor the input's cast has a gradient
        to compute for it; the weight's cast keeps its backward."""
        ops = [*self.cast(f"{gemm.name}.input_cast", gemm.inputs[0], input_dtype, self.compute, layer=gemm.layer),
               *self.weight_cast(gemm, weight_numel), gemm]
        if not data_input:
            return ops
        return [op.with_(attrs={**op.attrs, "input_grad": False}) if op.attrs.get("cast_of", "activation") == "activation"
                else op for op in ops]

    def mixed(self, op: Op, low_inputs: int) -> Op:
        """A pointwise op of ``high`` dtype of which ``low_inputs`` inputs arrive in the compute dtype (type
        promotion: bf16 + fp32 runs in fp32): it reads those at the narrower width."""
        if not self.amp or not low_inputs:
            return op
        n = int(op.attrs["numel"])
        return op.with_(bytes_read=op.bytes_read - low_inputs * n * (self.high.bytes - self.compute.bytes))
