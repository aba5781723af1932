"""HuggingFace ``config.json`` -> ``TransformerConfig`` (no transformers dependency, no network).

Supported ``model_type`` values: gpt2, bert, llama, mistral, mixtral, qwen2. Field names follow each
architecture's ``configuration_*.py`` in huggingface/transformers.
"""

from __future__ import annotations

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


def _llama(c: dict[str, Any], name: str, path: str) -> TransformerConfig:
    heads = _req(c, "num_attention_heads", path)
    bias = bool(c.get("attention_bias", False))
    return TransformerConfig(
        name=name, layers=_req(c, "num_hidden_layers", path), hidden=_req(c, "hidden_size", path), heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim"),
        ffn=_req(c, "intermediate_size", path), vocab=_req(c, "vocab_size", path), norm="rms",
        activation="swiglu", qkv_bias=bias or c.get("model_type") == "qwen2", out_bias=bias,
        mlp_bias=bool(c.get("mlp_bias", False)), tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        rotary=True, num_experts=c.get("num_local_experts", 0) or 0, top_k=c.get("num_experts_per_tok", 0) or 0,
        separate_qkv=True, source=path,
    )


_BUILDERS: dict[str, Callable[[dict[str, Any], str, str], TransformerConfig]] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _llama, "mixtral": _llama, "qwen2": _llama,
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
