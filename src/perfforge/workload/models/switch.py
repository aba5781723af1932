"""Switch Transformer (T5-style encoder-decoder with top-1 mixture-of-experts FFNs), as NeuSight ran it.

Layout (HF ``SwitchTransformersForConditionalGeneration``): an encoder and a decoder stack of RMS-norm
pre-norm blocks; attention projects ``d_model`` to ``heads x d_kv`` (not necessarily ``d_model``) with no
biases, plus a relative-position bias added to the scores; every ``sparse_step``-th block (the odd ones)
replaces the FFN with a router and ``experts`` FFNs. Each expert runs on ``batch x expert_capacity`` rows:
NeuSight's traced forward pads every expert's input to that capacity and runs all experts
(``neusight/Tracing/trace.py``, ``custom_switchtransmlp_forward``). The decoder reads a target sequence of
the same length as the source (NeuSight feeds ``decoder_input_ids = input_ids``).

The eager graph (``attention_impl="unfused"``) lists that layer's kernels expert by expert: the token count read
back to Python, the boolean-mask gather and scatter (each a ``nonzero`` that waits for the GPU), the two GEMMs
and the activation. Those three reads stop the host from running ahead of the GPU (``attrs["host_sync"]``), which
the analytical engine prices. The fused graph keeps one batched GEMM per projection for all experts.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op
from perfforge.workload.precision import Precision


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    name: str
    layers: int            # per stack (encoder and decoder each)
    d_model: int
    d_ff: int
    heads: int
    d_kv: int
    experts: int
    expert_capacity: int
    sparse_step: int
    vocab: int
    source: str


def _attention(ops: list[Op], p: str, batch: int, sq: int, skv: int, cfg: SwitchConfig, prec: Precision, layer: str,
               *, causal: bool, impl: str, cross: bool, dropout: bool) -> None:
    h, inner = cfg.d_model, cfg.heads * cfg.d_kv
    tq, tkv = batch * sq, batch * skv
    lo, hi = prec.compute, prec.high
    if impl == "unfused":
        # HF's T5-style attention projects with three Linear layers (q, k, v); k and v read the encoder's output
        # in cross-attention. One input, saved once (under autocast each GEMM casts and saves its own copy).
        for i, (part, rows) in enumerate((("q", tq), ("k", tkv), ("v", tkv))):
            saves = i == 0 or prec.amp or (cross and part == "k")
            ops.extend(prec.gemm(L.linear(f"{p}.{part}", rows, h, inner, lo, bias=False, layer=layer,
                                          save_input=saves), hi))
    elif cross:
        ops.extend(prec.gemm(L.linear(f"{p}.q", tq, h, inner, lo, bias=False, layer=layer), hi))
        ops.extend(prec.gemm(L.linear(f"{p}.kv", tkv, h, 2 * inner, lo, bias=False, layer=layer), hi))
    else:
        ops.extend(prec.gemm(L.linear(f"{p}.qkv", tq, h, 3 * inner, lo, bias=False, layer=layer), hi))
    args = (f"{p}.core", batch, cfg.heads, cfg.heads, sq, skv, cfg.d_kv)
    if impl == "fused":
        ops.append(L.attention(*args, lo, causal=causal, layer=layer))
    else:
        core = L.attention_unfused(*args, lo, causal=causal, layer=layer)
        scores = core[0].outputs[0]
        # the relative-position bias (built from an fp32 table under autocast) is added to the scores before the
        # softmax; from there on the scores are fp32 until PV's autocast casts the probabilities back
        middle = L.attention_unfused(*args, hi, causal=causal, layer=layer)[1:-1] if prec.amp else core[1:-1]
        # training dropout on the probabilities, between the softmax and PV (T5's attention)
        drop = [L.dropout(f"{p}.core.dropout", scores, hi, layer=layer)] if dropout else []
        ops += [core[0], prec.mixed(L.elementwise(f"{p}.position_bias", scores, hi, fn="add", n_inputs=2,
                                                  layer=layer), 1),
                *middle, *drop, *prec.cast(f"{p}.core.probs_cast", scores, hi, lo, layer=layer), core[-1]]
    ops.extend(prec.gemm(L.linear(f"{p}.out", tq, inner, h, lo, bias=False, layer=layer), lo))
    if dropout:
        ops.append(L.dropout(f"{p}.dropout", (tq, h), lo, layer=layer))
    ops.append(prec.mixed(L.elementwise(f"{p}.residual", (tq, h), hi, fn="add", n_inputs=2, layer=layer), 1))


def _padded_experts_eager(ops: list[Op], p: str, batch: int, seq: int, cfg: SwitchConfig, prec: Precision,
                          layer: str, dropout: bool) -> None:
    """NeuSight's padded expert loop kernel by kernel, as a profiled step launches it: a copy of the input and a
    zeroed ``batch x capacity`` buffer; then per expert the routing mask's column cast to bool, the chosen-token
    count read back to Python (``.item()``), the boolean-mask gather into the buffer (a ``nonzero``, then the
    index kernel), the expert's two GEMMs, and the masked scatter of its rows back (another ``nonzero``, then
    ``index_put``). The count and the two ``nonzero``s wait for the GPU (``host_sync``). The masks are bool
    (one byte, ``DType.INT8`` here)."""
    tokens, h, f = batch * seq, cfg.d_model, cfg.d_ff
    lo, hi = prec.compute, prec.high
    rows = batch * cfg.expert_capacity

    def tagged(op: Op, **attrs: object) -> Op:
        return op.with_(attrs={**op.attrs, **attrs})

    ops += [tagged(L.elementwise(f"{p}.experts.clone", (tokens, h), hi, fn="copy", layer=layer), grad_passthrough=True),
            tagged(L.elementwise(f"{p}.experts.zeros", (rows, h), hi, fn="fill", n_inputs=0, layer=layer), no_grad=True)]
    for e in range(cfg.experts):
        q = f"{p}.expert{e}"
        mask = (batch, seq)
        ops += [tagged(L.elementwise(f"{q}.mask", mask, DType.INT8, fn="copy", layer=layer), no_grad=True),
                tagged(L.reduction(f"{q}.count", mask, (1,), DType.INT8, fn="count_nonzero", layer=layer),
                       no_grad=True, host_sync=True),
                tagged(L.reduction(f"{q}.gather.nonzero", mask, (rows,), DType.INT8, fn="nonzero", layer=layer),
                       no_grad=True, host_sync=True),
                L.elementwise(f"{q}.gather", (rows, h), hi, fn="copy", layer=layer),
                L.elementwise(f"{q}.buffer", (rows, h), hi, fn="copy", layer=layer)]
        ops.extend(prec.gemm(L.linear(f"{q}.wi", rows, h, f, lo, bias=False, layer=layer), hi))
        ops.append(L.elementwise(f"{q}.act", (rows, f), lo, fn="relu", layer=layer))
        if dropout:
            ops.append(L.dropout(f"{q}.dropout", (rows, f), lo, layer=layer))
        ops.extend(prec.gemm(L.linear(f"{q}.wo", rows, f, h, lo, bias=False, layer=layer), lo))
        ops += [tagged(L.reduction(f"{q}.scatter.nonzero", mask, (rows,), DType.INT8, fn="nonzero", layer=layer),
                       no_grad=True, host_sync=True),
                L.elementwise(f"{q}.scatter", (rows, h), hi, fn="copy", layer=layer)]


def _ffn(ops: list[Op], p: str, batch: int, seq: int, cfg: SwitchConfig, prec: Precision, layer: str,
         sparse: bool, eager: bool, dropout: bool) -> None:
    tokens, h, f = batch * seq, cfg.d_model, cfg.d_ff
    lo, hi = prec.compute, prec.high
    ops.append(L.rms_norm(f"{p}.norm", (tokens, h), hi, layer=layer))
    if sparse:
        ops.extend(prec.gemm(L.linear(f"{p}.router", tokens, h, cfg.experts, lo, bias=False, layer=layer), hi))
        ops.append(prec.mixed(L.moe_router(f"{p}.route", tokens, cfg.experts, 1, hi, layer=layer), 1))
        if eager:
            _padded_experts_eager(ops, p, batch, seq, cfg, prec, layer, dropout)
        else:
            rows = batch * cfg.expert_capacity
            ops.extend(prec.gemm(L.linear(f"{p}.experts.wi", rows, h, f, lo, bias=False, layer=layer,
                                          batch=cfg.experts), hi))
            ops.append(L.elementwise(f"{p}.experts.act", (cfg.experts, rows, f), lo, fn="relu", layer=layer))
            if dropout:
                ops.append(L.dropout(f"{p}.experts.dropout", (cfg.experts, rows, f), lo, layer=layer))
            ops.extend(prec.gemm(L.linear(f"{p}.experts.wo", rows, f, h, lo, bias=False, layer=layer,
                                          batch=cfg.experts), lo))
        # expert outputs times the fp32 router probabilities
        ops.append(prec.mixed(L.elementwise(f"{p}.combine", (tokens, h), hi, fn="mul", n_inputs=2, layer=layer), 1))
        branch = hi
    else:
        ops.extend(prec.gemm(L.linear(f"{p}.wi", tokens, h, f, lo, bias=False, layer=layer), hi))
        ops.append(L.elementwise(f"{p}.act", (tokens, f), lo, fn="relu", layer=layer))
        if dropout:
            ops.append(L.dropout(f"{p}.dropout_act", (tokens, f), lo, layer=layer))
        ops.extend(prec.gemm(L.linear(f"{p}.wo", tokens, f, h, lo, bias=False, layer=layer), lo))
        branch = lo
    if dropout:
        ops.append(L.dropout(f"{p}.dropout", (tokens, h), branch, layer=layer))
    ops.append(prec.mixed(L.elementwise(f"{p}.residual", (tokens, h), hi, fn="add", n_inputs=2, layer=layer),
                          1 if branch != hi else 0))


def build_switch(cfg: SwitchConfig, *, batch: int = 1, seq: int = 512, dtype: DType = DType.FP16,
                 phase: str = "prefill", attention_impl: str = "fused", amp: bool = False,
                 dropout: float = 0.0) -> Workload:
    """``amp``: torch.autocast in ``dtype`` over an fp32 model (``perfforge.workload.precision``). ``dropout``: the
    training run's dropout probability (HF's ``dropout_rate``); > 0 adds its kernels where T5-style blocks run
    them: on the embeddings, the attention probabilities, each sub-layer's output, the FFN's and every expert's
    activations, and after each stack's final norm."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if phase != "prefill":
        raise ConfigError(f"{cfg.name}: only full-sequence passes are modelled (phase 'prefill'), not '{phase}'")
    if attention_impl not in ("fused", "unfused"):
        # HF's SwitchTransformers has no sdpa path: its attention runs eagerly
        raise ConfigError(f"{cfg.name}: attention_impl '{attention_impl}' is not modelled (allowed: fused, unfused)")
    prec = Precision(dtype, amp)
    hi = prec.high
    h, tokens = cfg.d_model, batch * seq
    ops: list[Op] = []
    drop, eager = dropout > 0, attention_impl == "unfused"
    for stack in ("encoder", "decoder"):
        emb = L.embedding(f"{stack}.embed", tokens, cfg.vocab, h, hi, layer=f"{stack}.embed")
        ops.append(emb.with_(attrs={**emb.attrs, "input_grad": False}))
        if drop:
            ops.append(L.dropout(f"{stack}.embed.dropout", (tokens, h), hi, layer=f"{stack}.embed"))
        for i in range(cfg.layers):
            layer = f"{stack}.{i}"
            ops.append(L.rms_norm(f"{layer}.self_attn.norm", (tokens, h), hi, layer=layer))
            _attention(ops, f"{layer}.self_attn", batch, seq, seq, cfg, prec, layer, causal=stack == "decoder",
                       impl=attention_impl, cross=False, dropout=drop)
            if stack == "decoder":
                ops.append(L.rms_norm(f"{layer}.cross_attn.norm", (tokens, h), hi, layer=layer))
                _attention(ops, f"{layer}.cross_attn", batch, seq, seq, cfg, prec, layer, causal=False,
                           impl=attention_impl, cross=True, dropout=drop)
            _ffn(ops, f"{layer}.ffn", batch, seq, cfg, prec, layer, sparse=i % cfg.sparse_step == 1, eager=eager,
                 dropout=drop)
        ops.append(L.rms_norm(f"{stack}.final_norm", (tokens, h), hi, layer=f"{stack}.head"))
        if drop:
            ops.append(L.dropout(f"{stack}.final_dropout", (tokens, h), hi, layer=f"{stack}.head"))
    head = L.linear("lm_head", tokens, h, cfg.vocab, dtype, bias=False, layer="head")
    # tied to the shared token embedding (autocast still casts that table for the GEMM)
    ops.extend(prec.gemm(head.with_(params=0), hi, weight_numel=cfg.vocab * h))
    # encoder and decoder share one embedding table in T5-style models: count it once
    ops[ops.index(next(o for o in ops if o.name == "decoder.embed"))] = next(
        o for o in ops if o.name == "decoder.embed").with_(params=0)
    meta = {"family": "transformer", "arch": "encoder-decoder", "layers": 2 * cfg.layers, "hidden": h,
            "heads": cfg.heads, "kv_heads": cfg.heads, "head_dim": cfg.d_kv, "ffn": cfg.d_ff, "vocab": cfg.vocab,
            "phase": phase, "kv_layers": 0, "num_experts": cfg.experts, "top_k": 1, "loss_rows": tokens,
            "loss_classes": cfg.vocab, "source": cfg.source, **prec.meta,
            # the eager graph lists the kernels HF launches: it pays the per-kernel host cost
            **({"op_granularity": "kernel"} if attention_impl == "unfused" else {})}
    return Workload(name=cfg.name, ops=tuple(ops), dtype=dtype, batch=batch, seq=seq, meta=meta)
