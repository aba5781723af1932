"""HF config.json import must give the same graph as the zoo for the same architecture."""

import json

import pytest

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
