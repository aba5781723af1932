"""Generic transformer builder covering GPT-2/3, BERT, Llama-2/3 (GQA), Mixtral (MoE) and ViT bodies.

One ``TransformerConfig`` describes the architecture; ``build_transformer`` turns it into forward ops for a
batch, a sequence length and a phase: ``prefill`` (or a full training/encoder forward over ``seq`` tokens)
or ``decode`` (one new token per sequence attending to ``seq`` cached tokens).
Q, K and V projections are one fused GEMM and a SwiGLU MLP's gate and up projections are one GEMM:
the same parameters and FLOPs as separate layers, and the way fast implementations run them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op


@dataclass(frozen=True, slots=True)
class TransformerConfig:
    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    kv_heads: int | None = None          # None = multi-head attention (kv_heads == heads)
    head_dim: int | None = None          # None = hidden // heads
    arch: Literal["decoder", "encoder"] = "decoder"
    max_positions: int = 0               # >0: learned absolute position embeddings
    type_vocab: int = 0                  # BERT token-type embeddings
    norm: Literal["layer", "rms"] = "layer"
    # gelu_tanh: the tanh approximation (HF "gelu_new", GPT-2/GPT-3); eager execution runs it as 8 kernels
    activation: Literal["gelu", "gelu_tanh", "swiglu", "relu"] = "gelu"
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    tied_embeddings: bool = True
    embedding_norm: bool = False         # BERT: LayerNorm after the embeddings
    final_norm: bool = True              # GPT/Llama: norm before the LM head
    post_norm: bool = False              # BERT: norm after each residual add
    lm_head: bool = True
    pooler: bool = False                 # BERT pooler (dense + tanh on the first token)
    num_experts: int = 0                 # >0: mixture-of-experts MLP
    top_k: int = 0
    rotary: bool = False
    attention_dropout: bool = True       # training dropout on the attention probabilities (OPT: off)
    source: str = ""                     # where the architecture numbers come from
    extras: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "ffn", "vocab"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{self.name}: {name} must be > 0, got {getattr(self, name)}")
        if self.kv_heads is not None and (self.kv_heads <= 0 or self.heads % self.kv_heads):
            raise ConfigError(f"{self.name}: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim is None and self.hidden % self.heads:
            raise ConfigError(f"{self.name}: hidden ({self.hidden}) is not divisible by heads ({self.heads})")
        if self.num_experts and not (0 < self.top_k <= self.num_experts):
            raise ConfigError(f"{self.name}: top_k must be in 1..num_experts ({self.num_experts})")

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden // self.heads


def _norm(cfg: TransformerConfig, name: str, shape: tuple[int, ...], dtype: DType, layer: str) -> Op:
    if cfg.norm == "rms":
        return L.rms_norm(name, shape, dtype, layer=layer)
    return L.layer_norm(name, shape, dtype, layer=layer)


def _mlp(cfg: TransformerConfig, ops: list[Op], prefix: str, tokens: int, dtype: DType, layer: str,
         eager: bool = False) -> None:
    h, f = cfg.hidden, cfg.ffn
    gated = cfg.activation == "swiglu"
    up_width = 2 * f if gated else f
    if cfg.num_experts:
        e, k = cfg.num_experts, cfg.top_k
        ops.append(L.linear(f"{prefix}.router", tokens, h, e, dtype, bias=False, layer=layer))
        ops.append(L.moe_router(f"{prefix}.route", tokens, e, k, dtype, layer=layer))
        # tokens are balanced across experts: each expert sees tokens*k/e rows (a grouped GEMM)
        rows = max(1, -(-tokens * k // e))
        ops.append(L.linear(f"{prefix}.experts.up", rows, h, up_width, dtype, bias=cfg.mlp_bias, layer=layer, batch=e))
        ops.append(L.elementwise(f"{prefix}.experts.act", (e, rows, f), dtype, fn="swiglu" if gated else cfg.activation,
                                 n_inputs=2 if gated else 1, layer=layer))
        ops.append(L.linear(f"{prefix}.experts.down", rows, f, h, dtype, bias=cfg.mlp_bias, layer=layer, batch=e))
        ops.append(L.elementwise(f"{prefix}.combine", (tokens, k, h), dtype, fn="mul", n_inputs=2, layer=layer))
        return
    ops.append(L.linear(f"{prefix}.up", tokens, h, up_width, dtype, bias=cfg.mlp_bias, layer=layer))
    act = "swiglu" if gated else cfg.activation
    if eager and act == "gelu_tanh":
        ops.extend(L.gelu_tanh_eager(f"{prefix}.act", (tokens, f), dtype, layer=layer))
    else:
        ops.append(L.elementwise(f"{prefix}.act", (tokens, f), dtype, fn=act, n_inputs=2 if gated else 1, layer=layer))
    ops.append(L.linear(f"{prefix}.down", tokens, f, h, dtype, bias=cfg.mlp_bias, layer=layer))


def transformer_layers(cfg: TransformerConfig, *, batch: int, seq: int, dtype: DType, phase: str = "prefill",
                       attention_impl: str = "fused", prefix: str = "layers", dropout: float = 0.0) -> list[Op]:
    """The repeated blocks only (no embeddings or head), for builders such as ViT to reuse. ``dropout`` > 0
    (a training run with dropout) adds HF's dropout kernels: on the attention probabilities when attention is
    unfused (a fused kernel applies it inside), after the attention projection and after the MLP."""
    if phase not in ("prefill", "decode"):
        raise ConfigError(f"unknown phase '{phase}' (allowed: prefill, decode)")
    if attention_impl not in ("fused", "unfused"):
        raise ConfigError(f"unknown attention_impl '{attention_impl}' (allowed: fused, unfused)")
    h, d, nh, nkv = cfg.hidden, cfg.d_head, cfg.heads, cfg.n_kv_heads
    q_len = 1 if phase == "decode" else seq
    tokens = batch * q_len
    causal = cfg.arch == "decoder"
    ops: list[Op] = []
    shape = (tokens, h)
    for i in range(cfg.layers):
        layer = f"{prefix}.{i}"
        if not cfg.post_norm:
            ops.append(_norm(cfg, f"{layer}.norm1", shape, dtype, layer))
        ops.append(L.linear(f"{layer}.attn.qkv", tokens, h, (nh + 2 * nkv) * d, dtype, bias=cfg.qkv_bias, layer=layer))
        if cfg.rotary:
            ops.append(L.elementwise(f"{layer}.attn.rotary", (tokens, (nh + nkv) * d), dtype, fn="mul", n_inputs=2,
                                     layer=layer))
        attn_args = (f"{layer}.attn.core", batch, nh, nkv, q_len, seq, d, dtype)
        if attention_impl == "fused":
            ops.append(L.attention(*attn_args, causal=causal, layer=layer))
            out_saved = False  # the attention op already saved its output
        else:
            core = L.attention_unfused(*attn_args, causal=causal, layer=layer)
            if dropout and cfg.attention_dropout:   # on the probabilities, between softmax and PV
                probs = core[-2]
                core.insert(len(core) - 1, L.dropout(f"{layer}.attn.core.dropout", probs.outputs[0], dtype, layer=layer))
            ops.extend(core)
            out_saved = True
        ops.append(L.linear(f"{layer}.attn.out", tokens, nh * d, h, dtype, bias=cfg.out_bias, layer=layer,
                            save_input=out_saved))
        if dropout:
            ops.append(L.dropout(f"{layer}.attn.dropout", shape, dtype, layer=layer))
        ops.append(L.elementwise(f"{layer}.attn.residual", shape, dtype, fn="add", n_inputs=2, layer=layer))
        ops.append(_norm(cfg, f"{layer}.norm2" if not cfg.post_norm else f"{layer}.norm1", shape, dtype, layer))
        _mlp(cfg, ops, f"{layer}.mlp", tokens, dtype, layer, eager=attention_impl == "unfused")
        if dropout:
            ops.append(L.dropout(f"{layer}.mlp.dropout", shape, dtype, layer=layer))
        ops.append(L.elementwise(f"{layer}.mlp.residual", shape, dtype, fn="add", n_inputs=2, layer=layer))
        if cfg.post_norm:
            ops.append(_norm(cfg, f"{layer}.norm2", shape, dtype, layer))
    return ops


def build_transformer(cfg: TransformerConfig, *, batch: int = 1, seq: int = 128, dtype: DType = DType.FP16,
                      phase: str = "prefill", attention_impl: str = "fused", dropout: float = 0.0) -> Workload:
    """``dropout``: the training run's dropout probability (0: no dropout kernels; inference runs none)."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if batch <= 0 or seq <= 0:
        raise ConfigError(f"batch and seq must be > 0 (got batch={batch}, seq={seq})")
    if cfg.max_positions and seq > cfg.max_positions:
        raise ConfigError(f"{cfg.name}: seq {seq} exceeds its {cfg.max_positions} learned positions")
    h = cfg.hidden
    q_len = 1 if phase == "decode" else seq
    tokens = batch * q_len
    ops: list[Op] = []
    emb = L.embedding("embed.tokens", tokens, cfg.vocab, h, dtype, layer="embed")
    ops.append(emb.with_(attrs={**emb.attrs, "input_grad": False}))
    if cfg.max_positions:
        ops.append(L.embedding("embed.positions", tokens, cfg.max_positions, h, dtype, layer="embed"))
        ops.append(L.elementwise("embed.add_positions", (tokens, h), dtype, fn="add", n_inputs=2, layer="embed"))
    if cfg.type_vocab:
        ops.append(L.embedding("embed.token_types", tokens, cfg.type_vocab, h, dtype, layer="embed"))
        ops.append(L.elementwise("embed.add_types", (tokens, h), dtype, fn="add", n_inputs=2, layer="embed"))
    if cfg.embedding_norm:
        ops.append(_norm(cfg, "embed.norm", (tokens, h), dtype, "embed"))
    if dropout:
        ops.append(L.dropout("embed.dropout", (tokens, h), dtype, layer="embed"))
    ops.extend(transformer_layers(cfg, batch=batch, seq=seq, dtype=dtype, phase=phase, attention_impl=attention_impl,
                                  dropout=dropout))
    if cfg.final_norm:
        ops.append(_norm(cfg, "final_norm", (tokens, h), dtype, "head"))
    loss_rows, loss_classes = 0, 0
    if cfg.lm_head:
        head = L.linear("lm_head", tokens, h, cfg.vocab, dtype, bias=False, layer="head")
        if cfg.tied_embeddings:
            head = head.with_(params=0)  # shares the token-embedding matrix
        ops.append(head)
        loss_rows, loss_classes = tokens, cfg.vocab
    if cfg.pooler:
        ops.append(L.linear("pooler.dense", batch, h, h, dtype, bias=True, layer="head"))
        ops.append(L.elementwise("pooler.tanh", (batch, h), dtype, fn="tanh", layer="head"))
        loss_rows, loss_classes = batch, 2  # sequence-pair classification fine-tuning head
    meta = {
        "family": "transformer", "arch": cfg.arch, "layers": cfg.layers, "hidden": h, "heads": cfg.heads,
        "kv_heads": cfg.n_kv_heads, "head_dim": cfg.d_head, "ffn": cfg.ffn, "vocab": cfg.vocab, "phase": phase,
        "kv_layers": cfg.layers if cfg.arch == "decoder" else 0, "num_experts": cfg.num_experts,
        "top_k": cfg.top_k, "loss_rows": loss_rows, "loss_classes": loss_classes, "source": cfg.source,
    }
    return Workload(name=cfg.name, ops=tuple(ops), dtype=dtype, batch=batch, seq=seq, meta=meta)
