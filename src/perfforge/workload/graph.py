"""Workload: a model's forward operator graph plus what training and inference derive from it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

from perfforge.core.dtypes import DType
from perfforge.workload.backward import backward_ops
from perfforge.workload.layers import cross_entropy
from perfforge.workload.op import Op, OpKind, Phase
from perfforge.workload.optimizer import OptimizerSpec, optimizer_op
from perfforge.workload.precision import Precision


@dataclass(frozen=True)
class Workload:
    """A model instance at a fixed batch, sequence length and dtype.

    ``ops`` are the forward ops in execution order. ``samples`` is what throughput counts (images or
    sequences); ``tokens`` is samples x sequence length for language models. ``meta`` records the
    architecture (layers, hidden, kv heads...) that memory and serving models need.
    """

    name: str
    ops: tuple[Op, ...]
    dtype: DType
    batch: int
    seq: int = 1
    meta: Mapping[str, Any] = field(default_factory=dict)
    extra_params: int = 0  # parameters that no op uses (e.g. BERT's unused pooler in a masked-LM head)

    def __post_init__(self) -> None:
        for op in self.ops:
            if op.phase is not Phase.FORWARD:
                raise ValueError(f"{self.name}: op {op.name} is not a forward op")

    # ---- totals ---------------------------------------------------------------------------
    @cached_property
    def params(self) -> int:
        return sum(op.params for op in self.ops) + self.extra_params

    @cached_property
    def forward_flops(self) -> float:
        return sum(op.flops for op in self.ops)

    @cached_property
    def forward_macs(self) -> float:
        """Multiply-accumulates of the matrix ops only, the figure model cards quote (e.g. ResNet-50 4.1 G)."""
        return sum(op.flops for op in self.ops if op.kind in (OpKind.MATMUL, OpKind.CONV2D, OpKind.BMM, OpKind.ATTENTION)) / 2

    @cached_property
    def backward(self) -> tuple[Op, ...]:
        """Backward ops in execution order (reverse of the forward)."""
        out: list[Op] = []
        for op in reversed(self.ops):
            out.extend(backward_ops(op))
        return tuple(out)

    @cached_property
    def backward_flops(self) -> float:
        return sum(op.flops for op in self.backward)

    @property
    def samples(self) -> int:
        return self.batch

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def amp(self) -> bool:
        """Traced or built as torch.autocast runs it (``meta["amp"]``): fp32 parameters, the GEMMs in ``dtype``."""
        return bool(self.meta.get("amp"))

    @property
    def param_dtype(self) -> DType:
        """What parameters and their gradients are stored in: fp32 under autocast, else the model's dtype."""
        return DType.FP32 if self.amp else self.dtype

    @cached_property
    def loss_op(self) -> Op | None:
        """Cross-entropy over the model's outputs, present only in training (``meta`` names its shape). Under
        autocast it runs in fp32 (on autocast's fp32 list), after a cast of the logits (``loss_ops``)."""
        rows, classes = self.meta.get("loss_rows"), self.meta.get("loss_classes")
        if not rows or not classes:
            return None
        return cross_entropy("loss", int(rows), int(classes), self.param_dtype)

    @cached_property
    def loss_ops(self) -> tuple[Op, ...]:
        """The loss as it runs: under autocast, the cast of the low-precision logits to fp32, then the loss."""
        if self.loss_op is None:
            return ()
        logits = self.loss_op.inputs[0]
        return (*Precision(self.dtype, self.amp).cast("loss.logits_cast", logits, self.dtype, self.param_dtype,
                                                       layer="loss"), self.loss_op)

    @cached_property
    def training_forward(self) -> tuple[Op, ...]:
        """The forward ops as a training step runs them: batch norm computes batch statistics (a reduction over
        the batch before it normalises, ``attrs["batch_stats"]``), where inference applies stored ones."""
        return tuple(op.with_(attrs={**op.attrs, "batch_stats": True}) if op.kind is OpKind.BATCH_NORM else op
                     for op in self.ops)

    def training_ops(self, optimizer: OptimizerSpec) -> tuple[Op, ...]:
        """Forward, loss, backward (reverse order) and one optimizer update."""
        loss = self.loss_ops
        loss_bwd = tuple(b for op in reversed(loss) for b in backward_ops(op))
        return (self.training_forward + loss + loss_bwd + self.backward
                + (optimizer_op(optimizer, self.params, self.param_dtype),))

    # ---- memory ---------------------------------------------------------------------------
    @cached_property
    def activation_bytes(self) -> float:
        """Activations kept for the backward pass without recomputation."""
        return sum(op.saved_bytes for op in self.ops)

    def activation_bytes_recompute(self) -> float:
        """Full activation recomputation per block: keep each block's input, rebuild one block at a time.

        A block is an op's ``layer``; its input is approximated by the first op's first input tensor.
        """
        blocks: OrderedDict[str, list[Op]] = OrderedDict()
        for op in self.ops:
            blocks.setdefault(op.layer, []).append(op)
        b = self.dtype.bytes
        checkpoints = 0.0
        largest_block = 0.0
        for ops in blocks.values():
            first = ops[0]
            shape = first.inputs[0] if first.inputs else ()
            size = 1
            for d in shape:
                size *= d
            checkpoints += size * b
            largest_block = max(largest_block, sum(op.saved_bytes for op in ops))
        return checkpoints + largest_block

    @property
    def weight_bytes(self) -> float:
        return self.params * self.param_dtype.bytes

    def kv_cache_bytes(self, context: int | None = None, batch: int | None = None) -> float:
        """K and V for every layer at ``context`` tokens (0 for models without decoder attention); a layer with a
        sliding window (``meta["kv_window"]``, ``meta["kv_window_layers"]`` of them) keeps at most its window."""
        layers = self.meta.get("kv_layers", 0)
        if not layers:
            return 0.0
        ctx = self.seq if context is None else context
        bsz = self.batch if batch is None else batch
        windowed = self.meta.get("kv_window_layers", 0)
        tokens = (layers - windowed) * ctx + windowed * min(ctx, self.meta.get("kv_window", ctx))
        return 2.0 * tokens * bsz * self.meta["kv_heads"] * self.meta["head_dim"] * self.dtype.bytes

    # ---- grouping ------------------------------------------------------------------------
    def flops_by_kind(self) -> dict[OpKind, float]:
        out: dict[OpKind, float] = {}
        for op in self.ops:
            out[op.kind] = out.get(op.kind, 0.0) + op.flops
        return out
