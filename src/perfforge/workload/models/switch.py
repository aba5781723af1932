"""Switch Transformer (T5-style encoder-decoder with top-1 mixture-of-experts FFNs), as NeuSight ran it.

Layout (HF ``SwitchTransformersForConditionalGeneration``): an encoder and a decoder stack of RMS-norm
pre-norm blocks; attention projects ``d_model`` to ``heads x d_kv`` (not necessarily ``d_model``) with no
biases, plus a relative-position bias added to the scores; every ``sparse_step``-th block (the odd ones)
replaces the FFN with a router and ``experts`` FFNs. Each expert runs on ``batch x expert_capacity`` rows:
NeuSight's traced forward pads every expert's input to that capacity and runs all experts
(``neusight/Tracing/trace.py``, ``custom_switchtransmlp_forward``). The decoder reads a target sequence of
the same length as the source (NeuSight feeds ``decoder_input_ids = input_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op


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


def _attention(ops: list[Op], p: str, batch: int, sq: int, skv: int, cfg: SwitchConfig, dtype: DType, layer: str,
               *, causal: bool, impl: str, cross: bool) -> None:
    h, inner = cfg.d_model, cfg.heads * cfg.d_kv
    tq, tkv = batch * sq, batch * skv
    if cross:
        ops.append(L.linear(f"{p}.q", tq, h, inner, dtype, bias=False, layer=layer))
        ops.append(L.linear(f"{p}.kv", tkv, h, 2 * inner, dtype, bias=False, layer=layer))
    else:
        ops.append(L.linear(f"{p}.qkv", tq, h, 3 * inner, dtype, bias=False, layer=layer))
    args = (f"{p}.core", batch, cfg.heads, cfg.heads, sq, skv, cfg.d_kv, dtype)
    if impl == "fused":
        ops.append(L.attention(*args, causal=causal, layer=layer))
    else:
        core = L.attention_unfused(*args, causal=causal, layer=layer)
        # the relative-position bias is added to the scores before the softmax
        ops += [core[0], L.elementwise(f"{p}.position_bias", (batch * cfg.heads, sq, skv), dtype, fn="add",
                                       n_inputs=2, layer=layer), *core[1:]]
    ops.append(L.linear(f"{p}.out", tq, inner, h, dtype, bias=False, layer=layer))
    ops.append(L.elementwise(f"{p}.residual", (tq, h), dtype, fn="add", n_inputs=2, layer=layer))


def _ffn(ops: list[Op], p: str, batch: int, seq: int, cfg: SwitchConfig, dtype: DType, layer: str, sparse: bool) -> None:
    tokens, h, f = batch * seq, cfg.d_model, cfg.d_ff
    ops.append(L.rms_norm(f"{p}.norm", (tokens, h), dtype, layer=layer))
    if sparse:
        ops.append(L.linear(f"{p}.router", tokens, h, cfg.experts, dtype, bias=False, layer=layer))
        ops.append(L.moe_router(f"{p}.route", tokens, cfg.experts, 1, dtype, layer=layer))
        rows = batch * cfg.expert_capacity
        ops.append(L.linear(f"{p}.experts.wi", rows, h, f, dtype, bias=False, layer=layer, batch=cfg.experts))
        ops.append(L.elementwise(f"{p}.experts.act", (cfg.experts, rows, f), dtype, fn="relu", layer=layer))
        ops.append(L.linear(f"{p}.experts.wo", rows, f, h, dtype, bias=False, layer=layer, batch=cfg.experts))
        ops.append(L.elementwise(f"{p}.combine", (tokens, h), dtype, fn="mul", n_inputs=2, layer=layer))
    else:
        ops.append(L.linear(f"{p}.wi", tokens, h, f, dtype, bias=False, layer=layer))
        ops.append(L.elementwise(f"{p}.act", (tokens, f), dtype, fn="relu", layer=layer))
        ops.append(L.linear(f"{p}.wo", tokens, f, h, dtype, bias=False, layer=layer))
    ops.append(L.elementwise(f"{p}.residual", (tokens, h), dtype, fn="add", n_inputs=2, layer=layer))


def build_switch(cfg: SwitchConfig, *, batch: int = 1, seq: int = 512, dtype: DType = DType.FP16,
                 phase: str = "prefill", attention_impl: str = "fused") -> Workload:
    if phase != "prefill":
        raise ConfigError(f"{cfg.name}: only full-sequence passes are modelled (phase 'prefill'), not '{phase}'")
    if attention_impl not in ("fused", "unfused"):
        raise ConfigError(f"unknown attention_impl '{attention_impl}' (allowed: fused, unfused)")
    h, tokens = cfg.d_model, batch * seq
    ops: list[Op] = []
    for stack in ("encoder", "decoder"):
        emb = L.embedding(f"{stack}.embed", tokens, cfg.vocab, h, dtype, layer=f"{stack}.embed")
        ops.append(emb.with_(attrs={**emb.attrs, "input_grad": False}))
        for i in range(cfg.layers):
            layer = f"{stack}.{i}"
            ops.append(L.rms_norm(f"{layer}.self_attn.norm", (tokens, h), dtype, layer=layer))
            _attention(ops, f"{layer}.self_attn", batch, seq, seq, cfg, dtype, layer, causal=stack == "decoder",
                       impl=attention_impl, cross=False)
            if stack == "decoder":
                ops.append(L.rms_norm(f"{layer}.cross_attn.norm", (tokens, h), dtype, layer=layer))
                _attention(ops, f"{layer}.cross_attn", batch, seq, seq, cfg, dtype, layer, causal=False,
                           impl=attention_impl, cross=True)
            _ffn(ops, f"{layer}.ffn", batch, seq, cfg, dtype, layer, sparse=i % cfg.sparse_step == 1)
        ops.append(L.rms_norm(f"{stack}.final_norm", (tokens, h), dtype, layer=f"{stack}.head"))
    head = L.linear("lm_head", tokens, h, cfg.vocab, dtype, bias=False, layer="head")
    ops.append(head.with_(params=0))  # tied to the shared token embedding
    # encoder and decoder share one embedding table in T5-style models: count it once
    ops[ops.index(next(o for o in ops if o.name == "decoder.embed"))] = next(
        o for o in ops if o.name == "decoder.embed").with_(params=0)
    meta = {"family": "transformer", "arch": "encoder-decoder", "layers": 2 * cfg.layers, "hidden": h,
            "heads": cfg.heads, "kv_heads": cfg.heads, "head_dim": cfg.d_kv, "ffn": cfg.d_ff, "vocab": cfg.vocab,
            "phase": phase, "kv_layers": 0, "num_experts": cfg.experts, "top_k": 1, "loss_rows": tokens,
            "loss_classes": cfg.vocab, "source": cfg.source}
    return Workload(name=cfg.name, ops=tuple(ops), dtype=dtype, batch=batch, seq=seq, meta=meta)
