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

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload import layers as L
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op
from perfforge.workload.precision import Precision


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
    max_positions: int = 0               # >0: learned absolute position embeddings (rows of the table)
    position_offset: int = 0             # table rows before position 0 (OPT's 2): the longest sequence is the rest
    type_vocab: int = 0                  # BERT token-type embeddings
    norm: Literal["layer", "rms"] = "layer"
    # gelu_tanh: the tanh approximation (HF "gelu_new", GPT-2/GPT-3); eager execution runs it as 8 kernels.
    # swiglu and geglu are gated MLPs (Llama's SiLU, Gemma's tanh GELU): the up projection is twice as wide
    activation: Literal["gelu", "gelu_tanh", "swiglu", "geglu", "relu"] = "gelu"
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    tied_embeddings: bool = True
    embedding_norm: bool = False         # BERT: LayerNorm after the embeddings
    final_norm: bool = True              # GPT/Llama: norm before the LM head
    post_norm: bool = False              # BERT: norm after each residual add
    lm_head: bool = True
    pooler: bool = False                 # BERT pooler (dense + tanh on the first token)
    num_experts: int = 0                 # >0: mixture-of-experts MLP (`ffn` is then each expert's width)
    top_k: int = 0
    shared_expert_ffn: int = 0           # Qwen2-MoE: a dense MLP of this width on every token beside the experts
    shared_expert_gate: bool = False     # Qwen2-MoE: sigmoid(Linear(hidden, 1)) scales the shared expert's output
    dense_layers: tuple[bool, ...] = ()  # an MoE model's layers with a dense MLP instead (Qwen's mlp_only_layers)
    dense_ffn: int = 0                   # their width (0: `ffn`)
    rotary: bool = False
    # HF's module projects Q, K and V with three Linear layers (BERT, OPT, Llama; GPT-2's Conv1D is one): the
    # eager graphs (attention_impl unfused/sdpa) run them as three GEMMs, the fused graph as one
    separate_qkv: bool = False
    attention_dropout: bool = True       # training dropout on the attention probabilities (OPT: off)
    qk_norm: bool = False                # Qwen3: an RMSNorm over each head of Q and of K before the rotary embedding
    embed_scale: bool = False            # Gemma: the token embeddings times sqrt(hidden) (one pointwise kernel)
    # sliding-window attention (Mistral v0.1, Phi-3, Gemma 2/3's local layers): each query sees its last
    # `sliding_window` keys; `sliding_layers` flags the windowed layers (empty: every layer, if a window is set)
    sliding_window: int = 0
    sliding_layers: tuple[bool, ...] = ()
    sandwich_norm: bool = False          # Gemma 2/3: a norm on the attention's and the MLP's output before each add
    attn_softcap: float = 0.0            # Gemma 2: scores -> cap * tanh(scores / cap) (three eager kernels)
    final_softcap: float = 0.0           # Gemma 2: the same on the logits
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
        if self.dense_layers and len(self.dense_layers) != self.layers:
            raise ConfigError(f"{self.name}: dense_layers flags {len(self.dense_layers)} layers, the model has "
                              f"{self.layers}")
        if self.sliding_window < 0:
            raise ConfigError(f"{self.name}: sliding_window must be >= 0, got {self.sliding_window}")
        if self.sliding_layers and len(self.sliding_layers) != self.layers:
            raise ConfigError(f"{self.name}: sliding_layers flags {len(self.sliding_layers)} layers, the model has "
                              f"{self.layers}")

    def moe_layer(self, i: int) -> bool:
        """Whether layer ``i`` routes its tokens to experts (else it runs a dense MLP)."""
        return bool(self.num_experts) and not (self.dense_layers and self.dense_layers[i])

    def layer_window(self, i: int) -> int:
        """Layer ``i``'s attention window in keys (0: full causal attention)."""
        if not self.sliding_window or (self.sliding_layers and not self.sliding_layers[i]):
            return 0
        return self.sliding_window

    @property
    def windowed_layers(self) -> int:
        return sum(1 for i in range(self.layers) if self.layer_window(i))

    @property
    def gated(self) -> bool:
        """A gated MLP (SwiGLU, GeGLU): gate and up projections, their product into the down projection."""
        return self.activation in ("swiglu", "geglu")

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def d_head(self) -> int:
        return self.head_dim or self.hidden // self.heads


# fused: one attention kernel, fused pointwise ops; unfused: HF's eager attention and pointwise ops;
# sdpa: HF's default, torch's fused scaled_dot_product_attention with the rest eager
ATTENTION_IMPLS = ("fused", "unfused", "sdpa")
# an encoder's head, as HF's model classes: BertModel (the config's pooler), BertForMaskedLM, BertForPreTraining
ENCODER_HEADS = ("default", "mlm", "pretraining")


def builder_head(head: str | None) -> str:
    """The builder's head for an HF class name: "none" (BertModel) and "lm" (a decoder's LM head) are the config's
    own head, "default"; "mlm" and "pretraining" pass through (``build_transformer`` checks them)."""
    return "default" if head in (None, "none", "lm") else head


def _norm(cfg: TransformerConfig, name: str, shape: tuple[int, ...], dtype: DType, layer: str) -> Op:
    if cfg.norm == "rms":
        return L.rms_norm(name, shape, dtype, layer=layer)
    return L.layer_norm(name, shape, dtype, layer=layer)


def experts_reached(tokens: float | np.ndarray, experts: int, top_k: int) -> float | np.ndarray:
    """Experts that receive a token when ``tokens`` tokens are each routed to ``top_k`` distinct experts of
    ``experts`` uniformly: e * (1 - (1 - k/e)^tokens) in expectation, rounded (k for one decoding token; all of
    them once tokens*k >> e). Works on arrays."""
    return np.clip(np.round(experts * (1.0 - (1.0 - top_k / experts) ** np.asarray(tokens, dtype=np.float64))),
                   1, experts)


def routed_experts(tokens: int, experts: int, top_k: int) -> tuple[int, int]:
    """(experts that run, token rows each): the tokens*k token-expert pairs shared evenly by the experts reached
    (a grouped GEMM)."""
    active = int(experts_reached(tokens, experts, top_k))
    return active, max(1, -(-tokens * top_k // active))


def _mlp(cfg: TransformerConfig, ops: list[Op], prefix: str, tokens: int, prec: Precision, layer: str,
         eager: bool = False, moe: bool = False) -> DType:
    """The MLP (or, ``moe``, the mixture of experts) on the norm's output (``prec.high``); returns its output's
    dtype."""
    h, f = cfg.hidden, cfg.ffn
    lo, hi = prec.compute, prec.high
    gated = cfg.gated
    up_width = 2 * f if gated else f
    if not moe:
        return _dense_mlp(cfg, ops, prefix, tokens, prec, layer, eager, (cfg.dense_ffn or f) if cfg.num_experts else f)
    e, k = cfg.num_experts, cfg.top_k
    ops.extend(prec.gemm(L.linear(f"{prefix}.router", tokens, h, e, lo, bias=False, layer=layer), hi))
    # the routing softmax runs in fp32 under autocast (on its fp32 list) over the low-precision logits
    ops.append(prec.mixed(L.moe_router(f"{prefix}.route", tokens, e, k, hi, layer=layer), 1))
    # only the experts that receive a token run, and only their weights are read; the parameters are every
    # expert's
    active, rows = routed_experts(tokens, e, k)
    for name, (d_in, d_out, dt) in (("up", (h, up_width, hi)), ("down", (f, h, lo))):
        gemm = L.linear(f"{prefix}.experts.{name}", rows, d_in, d_out, lo, bias=cfg.mlp_bias, layer=layer,
                        batch=active)
        gemm = gemm.with_(params=e * (d_in * d_out + (d_out if cfg.mlp_bias else 0)))
        ops.extend(prec.gemm(gemm, dt))
        if name == "up":
            ops.append(L.elementwise(f"{prefix}.experts.act", (active, rows, f), lo, fn=cfg.activation,
                                     n_inputs=2 if gated else 1, layer=layer))
    # expert outputs times the fp32 routing weights
    ops.append(prec.mixed(L.elementwise(f"{prefix}.combine", (tokens, k, h), hi, fn="mul", n_inputs=2,
                                        layer=layer), 1))
    if cfg.shared_expert_ffn:   # every token also runs the shared expert, added to the routed experts' sum
        _dense_mlp(cfg, ops, f"{prefix}.shared_expert", tokens, prec, layer, eager, cfg.shared_expert_ffn)
        if cfg.shared_expert_gate:   # sigmoid(x W_g) scales it
            ops.extend(prec.gemm(L.linear(f"{prefix}.shared_expert_gate", tokens, h, 1, lo, bias=False,
                                          layer=layer), hi))
            ops.append(L.elementwise(f"{prefix}.shared_expert_gate.act", (tokens, 1), lo, fn="sigmoid",
                                     layer=layer))
            ops.append(L.elementwise(f"{prefix}.shared_expert.scale", (tokens, h), lo, fn="mul", n_inputs=2,
                                     layer=layer))
        ops.append(prec.mixed(L.elementwise(f"{prefix}.shared_expert.add", (tokens, h), hi, fn="add",
                                            n_inputs=2, layer=layer), 1))
    return hi


def _dense_mlp(cfg: TransformerConfig, ops: list[Op], prefix: str, tokens: int, prec: Precision, layer: str,
               eager: bool, f: int) -> DType:
    """A dense MLP of width ``f`` (gated when the model's activation is); returns its output's dtype."""
    h = cfg.hidden
    lo, hi = prec.compute, prec.high
    gated = cfg.gated
    ops.extend(prec.gemm(L.linear(f"{prefix}.up", tokens, h, 2 * f if gated else f, lo, bias=cfg.mlp_bias,
                                  layer=layer), hi))
    act = cfg.activation
    act_dtype = lo
    if eager and act == "gelu_tanh":
        ops.extend(L.gelu_tanh_eager(f"{prefix}.act", (tokens, f), lo, layer=layer, high=hi))
        act_dtype = hi
    else:
        ops.append(L.elementwise(f"{prefix}.act", (tokens, f), lo, fn=act, n_inputs=2 if gated else 1, layer=layer))
    ops.extend(prec.gemm(L.linear(f"{prefix}.down", tokens, f, h, lo, bias=cfg.mlp_bias, layer=layer), act_dtype))
    return lo


def transformer_layers(cfg: TransformerConfig, *, batch: int, seq: int, dtype: DType, phase: str = "prefill",
                       attention_impl: str = "fused", prefix: str = "layers", dropout: float = 0.0,
                       amp: bool = False) -> list[Op]:
    """The repeated blocks only (no embeddings or head), for builders such as ViT to reuse. ``attention_impl``:
    "fused" (one attention kernel, fused pointwise ops), "unfused" (HF's eager attention and eager pointwise ops,
    such as GPT-2's GELU as 8 kernels) or "sdpa" (HF's default: a fused attention kernel, eager pointwise ops).
    ``dropout`` > 0
    (a training run with dropout) adds HF's dropout kernels: on the attention probabilities when attention is
    unfused (a fused kernel applies it inside), after the attention projection and after the MLP. ``amp``:
    torch.autocast in ``dtype`` over fp32 weights (``perfforge.workload.precision``); the residual stream, the
    norms and the eager softmax run in fp32, with the casts autocast launches."""
    if phase not in ("prefill", "decode"):
        raise ConfigError(f"unknown phase '{phase}' (allowed: prefill, decode)")
    if attention_impl not in ATTENTION_IMPLS:
        raise ConfigError(f"unknown attention_impl '{attention_impl}' (allowed: {', '.join(ATTENTION_IMPLS)})")
    prec = Precision(dtype, amp)
    lo, hi = prec.compute, prec.high
    h, d, nh, nkv = cfg.hidden, cfg.d_head, cfg.heads, cfg.n_kv_heads
    q_len = 1 if phase == "decode" else seq
    tokens = batch * q_len
    causal = cfg.arch == "decoder"
    ops: list[Op] = []
    shape = (tokens, h)
    for i in range(cfg.layers):
        layer = f"{prefix}.{i}"
        if not cfg.post_norm:
            ops.append(_norm(cfg, f"{layer}.norm1", shape, hi, layer))
        # the QKV projection reads the norm's output (pre-norm) or the residual stream (post-norm): both `hi`
        if cfg.separate_qkv and attention_impl in ("unfused", "sdpa"):
            for i_part, (part, width) in enumerate((("q", nh * d), ("k", nkv * d), ("v", nkv * d))):
                # all three read one tensor, saved once; under autocast each casts it anew and saves its copy
                ops.extend(prec.gemm(L.linear(f"{layer}.attn.{part}", tokens, h, width, lo, bias=cfg.qkv_bias,
                                              layer=layer, save_input=i_part == 0 or prec.amp), hi))
        else:
            ops.extend(prec.gemm(L.linear(f"{layer}.attn.qkv", tokens, h, (nh + 2 * nkv) * d, lo, bias=cfg.qkv_bias,
                                          layer=layer), hi))
        if cfg.qk_norm:
            # RMSNorm over head_dim, one weight of head_dim per norm; HF computes it in fp32 (kept at `hi` here)
            ops.append(L.rms_norm(f"{layer}.attn.q_norm", (tokens * nh, d), hi, layer=layer))
            ops.append(L.rms_norm(f"{layer}.attn.k_norm", (tokens * nkv, d), hi, layer=layer))
        if cfg.rotary:
            rot_shape = (tokens, (nh + nkv) * d)
            # HF builds cos/sin in fp32 and returns them in the hidden states' dtype (fp32 under autocast), so the
            # rotated q and k come out fp32 and attention casts them back
            ops.append(prec.mixed(L.elementwise(f"{layer}.attn.rotary", rot_shape, hi, fn="mul", n_inputs=2,
                                                layer=layer), 1))
            ops.extend(prec.cast(f"{layer}.attn.rotary_cast", rot_shape, hi, lo, layer=layer))
        attn_args = (f"{layer}.attn.core", batch, nh, nkv, q_len, seq, d, lo)
        if attention_impl in ("fused", "sdpa"):
            # a flash kernel skips the blocks outside a sliding window (and applies a soft cap inside)
            ops.append(L.attention(*attn_args, causal=causal, layer=layer, window=cfg.layer_window(i)))
            out_saved = False  # the attention op already saved its output
        else:
            # HF's eager attention computes the whole score matrix and masks it, window or not
            core = L.attention_unfused(*attn_args, causal=causal, layer=layer)
            if cfg.attn_softcap:   # after the scale: scores / cap, tanh, * cap
                scores = core[0].outputs[0]
                core[2:2] = [L.elementwise(f"{layer}.attn.core.softcap_{fn}", scores, lo, fn=fn, layer=layer)
                             for fn in ("div", "tanh", "mul")]
            probs = core[-2]
            if prec.amp:  # softmax is on autocast's fp32 list; HF casts the probabilities back to V's dtype
                scores = probs.outputs[0]
                core[-2:-1] = [*prec.cast(f"{layer}.attn.core.softmax_in", scores, lo, hi, layer=layer),
                               L.softmax(probs.name, scores, hi, layer=layer),
                               *prec.cast(f"{layer}.attn.core.softmax_out", scores, hi, lo, layer=layer)]
            if dropout and cfg.attention_dropout:   # on the probabilities, between softmax and PV
                core.insert(len(core) - 1, L.dropout(f"{layer}.attn.core.dropout", probs.outputs[0], lo, layer=layer))
            ops.extend(core)
            out_saved = True
        ops.extend(prec.gemm(L.linear(f"{layer}.attn.out", tokens, nh * d, h, lo, bias=cfg.out_bias, layer=layer,
                                      save_input=out_saved), lo))
        if dropout:
            ops.append(L.dropout(f"{layer}.attn.dropout", shape, lo, layer=layer))
        if cfg.sandwich_norm:
            ops.append(_norm(cfg, f"{layer}.post_attn_norm", shape, hi, layer))
        # the residual stream (`hi`) plus the branch (`lo`): type promotion runs the add in `hi`
        ops.append(prec.mixed(L.elementwise(f"{layer}.attn.residual", shape, hi, fn="add", n_inputs=2, layer=layer), 1))
        ops.append(_norm(cfg, f"{layer}.norm2" if not cfg.post_norm else f"{layer}.norm1", shape, hi, layer))
        branch = _mlp(cfg, ops, f"{layer}.mlp", tokens, prec, layer, eager=attention_impl in ("unfused", "sdpa"),
                      moe=cfg.moe_layer(i))
        if dropout:
            ops.append(L.dropout(f"{layer}.mlp.dropout", shape, branch, layer=layer))
        if cfg.sandwich_norm:
            ops.append(_norm(cfg, f"{layer}.post_mlp_norm", shape, hi, layer))
        ops.append(prec.mixed(L.elementwise(f"{layer}.mlp.residual", shape, hi, fn="add", n_inputs=2, layer=layer),
                              1 if branch != hi else 0))
        if cfg.post_norm:
            ops.append(_norm(cfg, f"{layer}.norm2", shape, hi, layer))
    return ops


def build_transformer(cfg: TransformerConfig, *, batch: int = 1, seq: int = 128, dtype: DType = DType.FP16,
                      phase: str = "prefill", attention_impl: str = "fused", dropout: float = 0.0,
                      amp: bool = False, head: str = "default") -> Workload:
    """``dropout``: the training run's dropout probability (0: no dropout kernels; inference runs none).
    ``amp``: torch.autocast in ``dtype`` over an fp32 model (``perfforge.workload.precision``). ``head``
    (encoders; HF's model classes): "default" is the config's own (``BertModel``: a pooler); "mlm" is
    ``BertForMaskedLM``: no pooler, and a masked-LM head over every token (dense, GELU, LayerNorm, and a decoder
    to the vocabulary tied to the token embeddings, with its own bias), trained with cross-entropy over the
    vocabulary; "pretraining" is ``BertForPreTraining``: the pooler, the masked-LM head and the next-sentence
    classifier on the pooled token, with the loss over the masked-LM logits."""
    if head not in ENCODER_HEADS:
        raise ConfigError(f"unknown head '{head}' (allowed: {', '.join(ENCODER_HEADS)})")
    if head != "default" and cfg.arch != "encoder":
        raise ConfigError(f"{cfg.name}: a '{head}' head belongs to an encoder, not a {cfg.arch}")
    mlm_head = head in ("mlm", "pretraining")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if batch <= 0 or seq <= 0:
        raise ConfigError(f"batch and seq must be > 0 (got batch={batch}, seq={seq})")
    if cfg.max_positions and seq > cfg.max_positions - cfg.position_offset:
        raise ConfigError(f"{cfg.name}: seq {seq} exceeds its {cfg.max_positions - cfg.position_offset} learned "
                          "positions")
    prec = Precision(dtype, amp)
    lo, hi = prec.compute, prec.high
    h = cfg.hidden
    q_len = 1 if phase == "decode" else seq
    tokens = batch * q_len
    ops: list[Op] = []
    # embedding tables are parameters: fp32 under autocast, and so are the sums and norms that follow
    emb = L.embedding("embed.tokens", tokens, cfg.vocab, h, hi, layer="embed")
    ops.append(emb.with_(attrs={**emb.attrs, "input_grad": False}))
    if cfg.embed_scale:
        ops.append(L.elementwise("embed.scale", (tokens, h), hi, fn="mul", n_inputs=1, layer="embed"))
    if cfg.max_positions:
        ops.append(L.embedding("embed.positions", tokens, cfg.max_positions, h, hi, layer="embed"))
        ops.append(L.elementwise("embed.add_positions", (tokens, h), hi, fn="add", n_inputs=2, layer="embed"))
    if cfg.type_vocab:
        ops.append(L.embedding("embed.token_types", tokens, cfg.type_vocab, h, hi, layer="embed"))
        ops.append(L.elementwise("embed.add_types", (tokens, h), hi, fn="add", n_inputs=2, layer="embed"))
    if cfg.embedding_norm:
        ops.append(_norm(cfg, "embed.norm", (tokens, h), hi, "embed"))
    if dropout:
        ops.append(L.dropout("embed.dropout", (tokens, h), hi, layer="embed"))
    ops.extend(transformer_layers(cfg, batch=batch, seq=seq, dtype=dtype, phase=phase, attention_impl=attention_impl,
                                  dropout=dropout, amp=amp))
    if cfg.final_norm:
        ops.append(_norm(cfg, "final_norm", (tokens, h), hi, "head"))
    loss_rows, loss_classes = 0, 0
    if cfg.lm_head:
        lm = L.linear("lm_head", tokens, h, cfg.vocab, lo, bias=False, layer="head")
        if cfg.tied_embeddings:
            # shares the token-embedding matrix (autocast still casts that matrix for the GEMM)
            ops.extend(prec.gemm(lm.with_(params=0), hi, weight_numel=cfg.vocab * h))
        else:
            ops.extend(prec.gemm(lm, hi))
        if cfg.final_softcap:   # logits / cap, tanh, * cap
            ops.extend(L.elementwise(f"lm_head.softcap_{fn}", (tokens, cfg.vocab), lo, fn=fn, layer="head")
                       for fn in ("div", "tanh", "mul"))
        loss_rows, loss_classes = tokens, cfg.vocab
    if cfg.pooler and head in ("default", "pretraining"):
        ops.extend(prec.gemm(L.linear("pooler.dense", batch, h, h, lo, bias=True, layer="head"), hi))
        ops.append(L.elementwise("pooler.tanh", (batch, h), lo, fn="tanh", layer="head"))
        loss_rows, loss_classes = batch, 2  # sequence-pair classification fine-tuning head
    if mlm_head:
        # BertLMPredictionHead: transform (dense + GELU + LayerNorm), then the tied decoder plus a vocab bias
        ops.extend(prec.gemm(L.linear("mlm.transform", tokens, h, h, lo, bias=True, layer="head"), hi))
        ops.append(L.elementwise("mlm.act", (tokens, h), lo, fn="gelu", layer="head"))
        ops.extend(prec.cast("mlm.norm.input_cast", (tokens, h), lo, hi, layer="head"))  # LayerNorm runs in fp32
        ops.append(_norm(cfg, "mlm.norm", (tokens, h), hi, "head"))
        decoder = L.linear("mlm.decoder", tokens, h, cfg.vocab, lo, bias=True, layer="head")
        ops.extend(prec.gemm(decoder.with_(params=cfg.vocab), hi, weight_numel=cfg.vocab * h))
        loss_rows, loss_classes = tokens, cfg.vocab
    if head == "pretraining":  # next-sentence prediction on the pooled first token
        ops.extend(prec.gemm(L.linear("nsp.classifier", batch, h, 2, lo, bias=True, layer="head"), lo))
    meta = {
        "family": "transformer", "arch": cfg.arch, "layers": cfg.layers, "hidden": h, "heads": cfg.heads,
        "kv_heads": cfg.n_kv_heads, "head_dim": cfg.d_head, "ffn": cfg.ffn, "vocab": cfg.vocab, "phase": phase,
        "kv_layers": cfg.layers if cfg.arch == "decoder" else 0, "num_experts": cfg.num_experts,
        # windowed layers keep only their last `kv_window` tokens' K and V (Workload.kv_cache_bytes)
        **({"kv_window": cfg.sliding_window, "kv_window_layers": cfg.windowed_layers} if cfg.windowed_layers else {}),
        "top_k": cfg.top_k, "loss_rows": loss_rows, "loss_classes": loss_classes, "source": cfg.source,
        **prec.meta,
        # eager graphs list one op per kernel HF launches (the grain of a traced module): the engine charges
        # them the traced per-op host cost
        **({"op_granularity": "kernel"} if attention_impl in ("unfused", "sdpa") else {}),
    }
    return Workload(name=cfg.name, ops=tuple(ops), dtype=dtype, batch=batch, seq=seq, meta=meta)
