"""HF config.json import must give the same graph as the zoo for the same architecture."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfforge
from perfforge.core.errors import ConfigError
from perfforge.workload.zoo import get_model

# Field values as published in each model's config.json on the HF hub (copied by hand).
GPT2 = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024, "vocab_size": 50257,
        "n_inner": None, "tie_word_embeddings": True}
LLAMA2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}
LLAMA3_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
MIXTRAL = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
           "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8,
           "num_experts_per_tok": 2, "tie_word_embeddings": False}
BERT_LARGE = {"model_type": "bert", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
              "intermediate_size": 4096, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}


def _signature(w):
    return [(op.kind, op.flops, op.bytes, op.params) for op in w.ops]


@pytest.mark.parametrize("cfg,zoo_id", [(GPT2, "gpt2"), (LLAMA2_7B, "llama-2-7b"), (LLAMA3_8B, "llama-3-8b"),
                                        (MIXTRAL, "mixtral-8x7b"), (BERT_LARGE, "bert-large")])
def test_same_graph_as_zoo(tmp_path, cfg, zoo_id):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    imported = perfforge.from_hf_config(path, batch=2, seq=256)
    zoo = get_model(zoo_id, batch=2, seq=256)
    assert imported.params == zoo.params
    assert _signature(imported) == _signature(zoo)


def test_predict_accepts_config_path(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(GPT2))
    r = perfforge.predict(str(path), "a100-sxm4-80gb", batch=1, seq=128)
    assert r.params == 124_439_808


def test_errors(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ConfigError, match="unsupported model_type 't5'"):
        perfforge.from_hf_config(path)
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ConfigError, match="missing field 'num_attention_heads'"):
        perfforge.from_hf_config(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        perfforge.from_hf_config(path)
    with pytest.raises(ConfigError, match="not found"):
        perfforge.from_hf_config(tmp_path / "missing.json")


# Published configs of the newer families (field values as in each model's config.json on the HF hub). The
# parameter totals were counted with transformers 5.24.0's own modules on the meta device (the test below
# recounts them where transformers is installed); they round to the model cards' 8.2B, 30.5B, 3.8B and 8.5B.
QWEN3_8B = {"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_attention_heads": 32,
            "num_key_value_heads": 8, "num_hidden_layers": 36, "vocab_size": 151936, "head_dim": 128,
            "tie_word_embeddings": False}
QWEN3_30B_A3B = {"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
                 "moe_intermediate_size": 768, "num_attention_heads": 32, "num_key_value_heads": 4,
                 "num_hidden_layers": 48, "vocab_size": 151936, "head_dim": 128, "num_experts": 128,
                 "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
                 "tie_word_embeddings": False}
PHI3_MINI = {"model_type": "phi3", "hidden_size": 3072, "intermediate_size": 8192, "num_attention_heads": 32,
             "num_key_value_heads": 32, "num_hidden_layers": 32, "vocab_size": 32064, "tie_word_embeddings": False}
GEMMA_7B = {"model_type": "gemma", "hidden_size": 3072, "intermediate_size": 24576, "num_attention_heads": 16,
            "num_key_value_heads": 16, "head_dim": 256, "num_hidden_layers": 28, "vocab_size": 256000,
            "hidden_activation": "gelu_pytorch_tanh"}
# Qwen/Qwen1.5-MoE-A2.7B: 60 experts of 1408 (top 4) and a gated shared expert of 5632 on every layer; "14.3B" total
QWEN15_MOE = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
              "shared_expert_intermediate_size": 5632, "num_attention_heads": 16, "num_key_value_heads": 16,
              "num_hidden_layers": 24, "vocab_size": 151936, "num_experts": 60, "num_experts_per_tok": 4,
              "tie_word_embeddings": False}
PUBLISHED = {"qwen3-8b": (QWEN3_8B, 8_190_735_360), "qwen3-30b-a3b": (QWEN3_30B_A3B, 30_532_122_624),
             "qwen1.5-moe-a2.7b": (QWEN15_MOE, 14_315_784_192),
             "phi-3-mini-4k": (PHI3_MINI, 3_821_079_552), "gemma-7b": (GEMMA_7B, 8_537_680_896)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_newer_families_have_transformers_parameter_counts(tmp_path, name):
    cfg, params = PUBLISHED[name]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert perfforge.from_hf_config(path, batch=1, seq=64).params == params
    try:
        import torch
        import transformers
    except ImportError:
        return
    with torch.device("meta"):
        module = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**cfg))
    assert sum(p.numel() for p in module.parameters()) == params


# Tiny configs of the same families: transformers' modules traced by from_torch (eager attention) must launch
# the same GEMM FLOPs as perfforge's graph of the config, and hold the same parameters
TINY = {
    "qwen3": {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 1000, "head_dim": 32,
              "tie_word_embeddings": True},
    "qwen3_moe": {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 1000,
                  "head_dim": 16, "num_experts": 8, "num_experts_per_tok": 2},
    # a gated shared expert beside the routed ones, and a dense layer (mlp_only_layers) among the MoE layers
    "qwen2_moe": {"model_type": "qwen2_moe", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "num_hidden_layers": 4, "vocab_size": 1000, "num_experts": 8, "num_experts_per_tok": 2,
                  "mlp_only_layers": [1]},
    # every second layer sparse (decoder_sparse_step 2), the others dense
    "qwen3_moe_step2": {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128,
                        "moe_intermediate_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
                        "num_hidden_layers": 4, "vocab_size": 1000, "head_dim": 16, "num_experts": 8,
                        "num_experts_per_tok": 2, "decoder_sparse_step": 2},
    "phi3": {"model_type": "phi3", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 1000, "pad_token_id": 0,
             "bos_token_id": 1, "eos_token_id": 1},
    "gemma": {"model_type": "gemma", "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
              "num_key_value_heads": 1, "head_dim": 32, "num_hidden_layers": 2, "vocab_size": 1000},
    # local/global layers, sandwich norms, soft caps (Gemma 2), per-head Q/K norms (Gemma 3)
    "gemma2": {"model_type": "gemma2", "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 32, "num_hidden_layers": 4, "vocab_size": 1000,
               "sliding_window": 8},
    "gemma3_text": {"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 256,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_hidden_layers": 7,
                    "vocab_size": 1000, "sliding_window": 8},
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_newer_families_launch_the_gemms_transformers_runs(family):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from perfforge.core.dtypes import DType
    from perfforge.workload.importers.hf_config import config_from_dict
    from perfforge.workload.models.transformer import build_transformer

    cfg = TINY[family]
    with torch.device("meta"):
        module = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**cfg, attn_implementation="eager"))
    ids = torch.ones(2, 16, dtype=torch.long, device="meta")
    # transformers runs MoE experts with torch._grouped_mm, which takes bf16 operands only
    traced = perfforge.from_torch(module, ids, dtype="bf16" if "moe" in family else "fp32")
    ours = build_transformer(config_from_dict(cfg, name=family), batch=2, seq=16, dtype=DType.FP32,
                             attention_impl="unfused")
    gemm_flops = lambda w: sum(o.flops for o in w.ops if o.kind.value in ("matmul", "bmm"))  # noqa: E731
    assert gemm_flops(traced) == gemm_flops(ours) > 0
    assert traced.params == ours.params == sum(p.numel() for p in module.parameters())
    assert "_grouped_mm" not in traced.meta.get("unmodelled", [])
    # the soft caps' tanh kernels (scores of every layer, logits) as transformers launches them
    tanh = lambda w: sum(o.attrs.get("fn") == "tanh" for o in w.ops)  # noqa: E731
    assert tanh(traced) == tanh(ours)
    cfg_hf = module.config
    ours_cfg = config_from_dict(cfg, name=family)
    if getattr(cfg_hf, "layer_types", None):   # the same layers windowed as transformers'
        assert [ours_cfg.layer_window(i) > 0 for i in range(ours_cfg.layers)] == \
            [t == "sliding_attention" and bool(getattr(cfg_hf, "sliding_window", None)) for t in cfg_hf.layer_types]


def test_newer_families_refuse_what_they_do_not_model():
    from perfforge.core.dtypes import DType
    from perfforge.serving.optable import _ops_for
    from perfforge.workload.importers.hf_config import config_from_dict

    with pytest.raises(ConfigError, match="decoder_sparse_step must be a positive integer"):
        config_from_dict({**QWEN3_30B_A3B, "decoder_sparse_step": 0})
    assert [config_from_dict({**QWEN3_30B_A3B, "mlp_only_layers": [0, 1]}).moe_layer(i) for i in range(3)] == \
        [False, False, True]
    with pytest.raises(ConfigError, match="dense MLP layers between the MoE layers are not in the serving"):
        _ops_for(config_from_dict(TINY["qwen2_moe"]), 1, 16, DType.FP16)
    with pytest.raises(ConfigError, match="hidden_activation 'relu' is not a GELU"):
        config_from_dict({**GEMMA_7B, "hidden_activation": "relu"})
    with pytest.raises(ConfigError, match="no embedding scale, sliding-window attention"):
        _ops_for(config_from_dict(GEMMA_7B), 1, 16, DType.FP16)
    assert "attn_qk_norm" in _ops_for(config_from_dict(QWEN3_8B), 1, 16, DType.FP16)


def test_sliding_window_attention_counts_only_the_window():
    """Mistral v0.1's 4096-key window (every layer) and Gemma 2's alternation: fused attention FLOPs by hand, a
    decode step reads only the window's K/V, and the KV cache keeps at most the window on the local layers."""
    from perfforge.core.dtypes import DType
    from perfforge.workload.importers.hf_config import config_from_dict
    from perfforge.workload.models.transformer import build_transformer

    mistral = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
               "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 32000, "sliding_window": 4096}
    s, w = 8192, 4096
    pairs = w * (w + 1) / 2 + (s - w) * w          # query i sees min(i + 1, w) keys
    for window, expected in ((4096, pairs), (None, s * (s + 1) / 2)):
        cfg = config_from_dict({**mistral, "sliding_window": window})
        core = [o for o in build_transformer(cfg, batch=1, seq=s, dtype=DType.BF16).ops if o.name.endswith("attn.core")]
        assert len(core) == 32 and all(o.flops == 4 * 32 * expected * 128 for o in core)
    assert config_from_dict({k: v for k, v in mistral.items() if k != "sliding_window"}).sliding_window == 4096
    decode = build_transformer(config_from_dict(mistral), batch=1, seq=s, dtype=DType.BF16, phase="decode")
    core = next(o for o in decode.ops if o.name.endswith("attn.core"))
    assert core.flops == 4 * 32 * w * 128 and core.bytes_read == (32 * 128 + 2 * 8 * w * 128) * 2
    assert decode.kv_cache_bytes() == 2 * 32 * w * 8 * 128 * 2
    assert decode.kv_cache_bytes(context=1000) == 2 * 32 * 1000 * 8 * 128 * 2
    gemma2 = config_from_dict(TINY["gemma2"])    # window 8 on layers 0 and 2 of 4
    wl = build_transformer(gemma2, batch=1, seq=64, dtype=DType.BF16)
    assert wl.kv_cache_bytes() == 2 * (2 * 64 + 2 * 8) * 2 * 32 * 2


def test_sliding_window_configs_are_validated():
    from perfforge.workload.importers.hf_config import config_from_dict

    with pytest.raises(ConfigError, match="layer_types must list 4 entries"):
        config_from_dict({**TINY["gemma2"], "layer_types": ["sliding_attention"] * 3})
    with pytest.raises(ConfigError, match="use_bidirectional_attention"):
        config_from_dict({**TINY["gemma3_text"], "use_bidirectional_attention": True})
    with pytest.raises(ConfigError, match="sliding_window must be a positive integer"):
        config_from_dict({**TINY["gemma2"], "sliding_window": -8})
    # Qwen's window applies only with use_sliding_window, from layer max_window_layers on
    qwen = {**TINY["qwen3"], "sliding_window": 8}
    assert config_from_dict(qwen).windowed_layers == 0
    assert config_from_dict({**qwen, "use_sliding_window": True, "max_window_layers": 1}).windowed_layers == 1
    moe = {**TINY["qwen3_moe"], "sliding_window": 8, "use_sliding_window": True, "max_window_layers": 1}
    assert config_from_dict(moe).windowed_layers == 2   # transformers' Qwen3-MoE windows every layer


@settings(max_examples=300, deadline=None)
@given(seq_kv=st.integers(1, 300), q_frac=st.floats(0.0, 1.0), window=st.integers(0, 400))
def test_windowed_causal_pairs_match_counting_them(seq_kv, q_frac, window):
    """The closed form against a count of each query's visible keys (the last seq_q positions query)."""
    from perfforge.workload.layers import _causal_pairs

    seq_q = max(1, round(q_frac * seq_kv))
    count = 0
    for i in range(seq_q):
        last = seq_kv - seq_q + i                       # the newest key query i sees
        count += last + 1 - (max(0, last - window + 1) if window else 0)
    assert _causal_pairs(seq_q, seq_kv, window) == count
