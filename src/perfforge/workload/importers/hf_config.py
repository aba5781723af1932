"""HuggingFace ``config.json`` -> ``TransformerConfig`` (no transformers dependency, no network).

Supported ``model_type`` values: gpt2, bert, llama, mistral, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, phi3,
gemma, gemma2, gemma3_text. Field names and defaults follow each architecture's ``configuration_*.py`` in huggingface/transformers
(5.x), and the graph its ``modeling_*.py``: parameter counts and GEMM FLOPs match transformers' own modules
(``tests/unit/test_hf_config.py``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from perfforge.core.errors import ConfigError
from perfforge.core.files import read_json_object
from perfforge.workload.models.transformer import TransformerConfig


def _req(cfg: dict[str, Any], key: str, path: str) -> Any:
    if key not in cfg:
        raise ConfigError(f"{path}: missing field '{key}' required for model_type '{cfg.get('model_type')}'")
    return cfg[key]


def _gpt2(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    hidden = _req(c, "n_embd", path)
    return TransformerConfig(
        name=name, layers=_req(c, "n_layer", path), hidden=hidden, heads=_req(c, "n_head", path),
        ffn=c.get("n_inner") or 4 * hidden, vocab=_req(c, "vocab_size", path), max_positions=c.get("n_positions", 1024),
        norm="layer", activation="gelu", tied_embeddings=c.get("tie_word_embeddings", True), source=path,
    )


def _bert(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    return TransformerConfig(
        name=name, layers=_req(c, "num_hidden_layers", path), hidden=_req(c, "hidden_size", path),
        heads=_req(c, "num_attention_heads", path), ffn=_req(c, "intermediate_size", path),
        vocab=_req(c, "vocab_size", path), arch="encoder", max_positions=c.get("max_position_embeddings", 512),
        type_vocab=c.get("type_vocab_size", 2), embedding_norm=True, final_norm=False, post_norm=True,
        lm_head=False, pooler=True, separate_qkv=True, source=path,
    )


# transformers' default ``sliding_window`` per model_type where its config class sets one (MistralConfig: 4096)
_DEFAULT_WINDOW = {"mistral": 4096, "gemma2": 4096, "gemma3_text": 4096}


def _windows(c: dict[str, Any], path: str) -> dict[str, Any]:
    """``sliding_window`` and ``sliding_layers`` as transformers reads them: a ``layer_types`` list where the
    config has one ("sliding_attention" / "full_attention"); otherwise Qwen2/Qwen3's ``use_sliding_window`` from
    layer ``max_window_layers`` on, Gemma 2's alternation (local first), Gemma 3's ``sliding_window_pattern``
    (every sixth layer global), and every layer for Mistral, Mixtral, Phi-3 and Qwen3-MoE (whose modeling code
    windows every layer when ``use_sliding_window`` is set)."""
    kind = c.get("model_type")
    if kind in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe") and not c.get("use_sliding_window", False):
        return {}
    window = c.get("sliding_window", _DEFAULT_WINDOW.get(kind)) or 0
    if not window:
        return {}
    if not isinstance(window, int) or window < 0:
        raise ConfigError(f"{path}: sliding_window must be a positive integer or null, got {window!r}")
    layers = _req(c, "num_hidden_layers", path)
    types = c.get("layer_types")
    if types is not None:
        allowed = ("sliding_attention", "full_attention")
        if len(types) != layers or any(t not in allowed for t in types):
            raise ConfigError(f"{path}: layer_types must list {layers} entries from {', '.join(allowed)}")
        flags = tuple(t == "sliding_attention" for t in types)
    elif kind in ("qwen2", "qwen3"):
        flags = tuple(i >= c.get("max_window_layers", 28) for i in range(layers))
    elif kind == "qwen2_moe":   # its config class windows the first max_window_layers layers instead
        flags = tuple(i < c.get("max_window_layers", 28) for i in range(layers))
    elif kind == "gemma2":
        flags = tuple(i % 2 == 0 for i in range(layers))
    elif kind == "gemma3_text":
        pattern = c.get("sliding_window_pattern", 6)
        flags = tuple(bool((i + 1) % pattern) for i in range(layers))
    else:
        flags = ()
    return {"sliding_window": window, "sliding_layers": flags}


def _llama(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    heads = _req(c, "num_attention_heads", path)
    bias = bool(c.get("attention_bias", False))
    return TransformerConfig(
        name=name, layers=_req(c, "num_hidden_layers", path), hidden=_req(c, "hidden_size", path), heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim"),
        ffn=_req(c, "intermediate_size", path), vocab=_req(c, "vocab_size", path), norm="rms",
        # Qwen2 always biases Q, K and V; Qwen2-MoE's config says so (``qkv_bias``, default True)
        activation="swiglu", out_bias=bias,
        qkv_bias=bias or c.get("model_type") == "qwen2" or bool(c.get("qkv_bias", c.get("model_type") == "qwen2_moe")),
        mlp_bias=bool(c.get("mlp_bias", False)), tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        rotary=True, num_experts=c.get("num_local_experts", 0) or 0, top_k=c.get("num_experts_per_tok", 0) or 0,
        separate_qkv=True, source=path, **_windows(c, path),
    )


def _qwen3(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    """Qwen3 (dense and MoE): Llama's block with an RMSNorm on each head of Q and K (``q_norm``/``k_norm``)."""
    cfg = replace(_llama(c, name, path), qk_norm=True)
    return _qwen_moe(c, cfg, path) if c.get("model_type") == "qwen3_moe" else cfg


def _qwen2_moe(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    """Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): Qwen2's block with experts and a gated shared expert."""
    return _qwen_moe(c, _llama(c, name, path), path)


def _qwen_moe(c: dict[str, Any], cfg: TransformerConfig, path: str) -> TransformerConfig:
    """Qwen's sparse MLP: ``num_experts`` experts of ``moe_intermediate_size`` on the layers where
    (i + 1) % ``decoder_sparse_step`` == 0 and i is not in ``mlp_only_layers`` (the others run a dense MLP of
    ``intermediate_size``), plus Qwen2-MoE's shared expert (``shared_expert_intermediate_size``, scaled by a
    sigmoid gate)."""
    only = c.get("mlp_only_layers") or []
    step = c.get("decoder_sparse_step", 1)
    if not isinstance(step, int) or step < 1 or not all(isinstance(i, int) for i in only):
        raise ConfigError(f"{path}: decoder_sparse_step must be a positive integer and mlp_only_layers a list of "
                          f"layer indices (got {step!r}, {only!r})")
    dense = tuple(i in only or (i + 1) % step != 0 for i in range(cfg.layers))
    shared = c.get("shared_expert_intermediate_size") or 0 if c.get("model_type") == "qwen2_moe" else 0
    return replace(cfg, ffn=_req(c, "moe_intermediate_size", path), num_experts=_req(c, "num_experts", path),
                   top_k=_req(c, "num_experts_per_tok", path), dense_layers=dense if any(dense) else (),
                   dense_ffn=_req(c, "intermediate_size", path) if any(dense) else 0,
                   shared_expert_ffn=shared, shared_expert_gate=bool(shared))


def _phi3(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    """Phi-3: Llama's block with one fused QKV projection (``qkv_proj``) and a fused gate/up projection."""
    return replace(_llama(c, name, path), separate_qkv=False)


# HF's names for the tanh approximation of GELU (Gemma's ``hidden_activation``); the exact GELU costs the same
_GEMMA_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu", "gelu_new", "gelu_fast")


def _gemma(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    """Gemma (1): a gated GELU MLP (GeGLU), embeddings scaled by sqrt(hidden) and always tied to the LM head, an
    explicit ``head_dim`` (256 in the published models)."""
    act = c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in _GEMMA_ACTIVATIONS:
        raise ConfigError(f"{path}: hidden_activation {act!r} is not a GELU (allowed: {', '.join(_GEMMA_ACTIVATIONS)})")
    return replace(_llama(c, name, path), activation="geglu", embed_scale=True,
                   tied_embeddings=bool(c.get("tie_word_embeddings", True)))


def _gemma2(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    """Gemma 2 and Gemma 3 (text): Gemma's block with a norm after the attention and after the MLP ("sandwich"),
    sliding-window attention on the local layers, soft caps on the attention scores and the logits (Gemma 2:
    50 and 30 by default; Gemma 3 has none, and an RMSNorm on each head of Q and K instead)."""
    gemma3 = c.get("model_type") == "gemma3_text"
    if c.get("use_bidirectional_attention"):
        raise ConfigError(f"{path}: use_bidirectional_attention (an encoder such as EmbeddingGemma) is not modelled; "
                          "the decoder's causal attention is")
    caps = {"attn_logit_softcapping": None if gemma3 else 50.0, "final_logit_softcapping": None if gemma3 else 30.0}
    attn_cap, final_cap = (c.get(k, default) or 0.0 for k, default in caps.items())
    return replace(_gemma(c, name, path), sandwich_norm=True, qk_norm=gemma3, attn_softcap=float(attn_cap),
                   final_softcap=float(final_cap))


_BUILDERS: dict[str, Callable[[dict[str, Any], str, str], TransformerConfig]] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _llama, "mixtral": _llama, "qwen2": _llama,
    "qwen2_moe": _qwen2_moe, "qwen3": _qwen3, "qwen3_moe": _qwen3, "phi3": _phi3, "gemma": _gemma, "gemma2": _gemma2,
    "gemma3_text": _gemma2,
}


def config_from_dict(data: dict[str, Any], name: str = "hf-model", path: str = "<dict>") -> TransformerConfig:
    model_type = data.get("model_type")
    if model_type not in _BUILDERS:
        raise ConfigError(f"{path}: unsupported model_type {model_type!r} (supported: {', '.join(sorted(_BUILDERS))})")
    try:
        return _BUILDERS[model_type](data, name, path)
    except TypeError as exc:
        raise ConfigError(f"{path}: a field has the wrong type ({exc})") from None


def load_hf_config(path: str | Path) -> TransformerConfig:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    data = read_json_object(p, "HF config")
    name = data.get("_name_or_path") or p.parent.name or "hf-model"
    return config_from_dict(data, name=str(name).split("/")[-1], path=str(p))
