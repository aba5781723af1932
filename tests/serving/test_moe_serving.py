"""Serving a mixture of experts: each iteration runs the experts its tokens reach, and the router."""

import json

import pytest

from perfforge.cli.main import main
from perfforge.core.dtypes import DType
from perfforge.serving.batch_time import _PER_LAYER_TOKEN_OPS
from perfforge.serving.optable import _ops_for, model_table
from perfforge.serving.run import simulate
from perfforge.serving.spec import make_spec
from perfforge.workload.decoders import decoder_config

# Mixtral-8x7B: 8 experts, top-2, hidden 4096, expert MLP 14336, 32 layers
H, F = 4096, 14336


def test_a_decoding_token_reaches_top_k_experts_and_a_full_batch_all():
    cfg = decoder_config("mixtral-8x7b")
    one = _ops_for(cfg, 1, 1, DType.BF16)
    up = one["mlp_up_proj"]
    assert up.attrs["batch"] == 2 and up.attrs["m"] == 1 and up.bytes_read == (2 * H + 2 * H * 2 * F) * 2
    assert _ops_for(cfg, 1, 4096, DType.BF16)["mlp_up_proj"].attrs["batch"] == 8
    assert _ops_for(cfg, 2, 1, DType.BF16)["mlp_down_proj"].attrs["k"] == F // 2     # experts split over TP ranks
    assert [op.kind.value for op in one["mlp_router"]] == ["matmul", "moe_router", "elementwise"]
    assert "mlp_router" in model_table("mixtral-8x7b", "h200-sxm-141gb", 1, "bf16").token_ops
    assert "mlp_router" in model_table("llama-2-7b", "h200-sxm-141gb", 1, "bf16").absent


def test_a_lone_request_decodes_at_the_tables_sum():
    """At a very low rate every decode iteration is one token: TPOT is the table's per-layer ops at one token,
    32 layers, the decode attention, the embedding and the LM head, added by hand."""
    t = model_table("mixtral-8x7b", "h200-sxm-141gb", 1, "bf16")
    per_layer = sum(float(t.token_time(op, 1.0)) for op in _PER_LAYER_TOKEN_OPS)
    step = 32 * (per_layer + float(t.decode_attention([1], [576])[0])) + float(t.token_time("lm_head", 1.0)) + \
        float(t.token_time("emb", 1.0))
    report = json.loads(simulate(make_spec(model="mixtral-8x7b", hardware="h200-sxm-141gb", dtype="bf16", qps=0.02,
                                           requests=10, prefill=512, decode=128)).to_json())
    assert report["tpot_p50_s"] == pytest.approx(step, rel=0.01)


def test_moe_profiles_cannot_be_exported_to_vidurs_format(capsys, tmp_path):
    assert main(["serve", "--model", "mixtral-8x7b", "--hardware", "h200-sxm-141gb", "--requests", "10",
                 "--export-profiles", str(tmp_path / "p")]) == 2
    assert "no column for expert routing" in capsys.readouterr().err


def test_moe_bandwidth_and_flop_utilisation_count_the_experts_that_run():
    """An iteration cannot move more bytes than the device's bandwidth allows in its time, and a token runs
    top_k of each layer's experts: MBU <= 1 (it was 1.2 for Qwen3-30B-A3B when every iteration was charged every
    expert's weights), and MFU uses the active parameters (Mixtral: 12.9B of 46.7B)."""
    for model, hardware in (("mixtral-8x7b", "h200-sxm-141gb"), ("llama-2-7b", "h100-sxm5-80gb")):
        report = json.loads(simulate(make_spec(model=model, hardware=hardware, dtype="bf16", qps=2, requests=60,
                                               prefill=1024, decode=256)).to_json())
        assert 0 < report["mbu"] <= 1.0 and 0 < report["mfu"] < 1.0
    from perfforge.serving.run import _model_facts

    params, _, experts = _model_facts("mixtral-8x7b", DType.BF16)
    cfg = decoder_config("mixtral-8x7b")
    active = params - experts + experts * cfg.top_k / cfg.num_experts
    assert experts == 32 * 8 * 3 * H * F and active == pytest.approx(12.88e9, rel=0.01)   # Mixtral's 12.9B active


def test_a_shared_expert_runs_on_every_token(tmp_path):
    """Qwen1.5-MoE-A2.7B's gated shared expert (5632 wide) joins the routed experts' up/down operators, its gate the
    router's; one decoding token's up projections read 4 routed experts' and the shared expert's weights."""
    qwen15_moe = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_attention_heads": 16,
                  "num_key_value_heads": 16, "num_hidden_layers": 24, "vocab_size": 151936, "num_experts": 60,
                  "num_experts_per_tok": 4, "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(qwen15_moe))
    cfg = decoder_config(str(path))
    one = _ops_for(cfg, 1, 1, DType.BF16)
    routed, shared = one["mlp_up_proj"]
    assert routed.attrs["batch"] == 4 and shared.attrs["n"] == 2 * 5632 and shared.attrs["m"] == 1
    assert [op.name for op in one["mlp_router"]][-4:] == ["shared.gate", "shared.gate_act", "shared.scale", "shared.add"]
    report = json.loads(simulate(make_spec(model=str(path), hardware="h100-sxm5-80gb", dtype="bf16", qps=1,
                                           requests=20, prefill=256, decode=32)).to_json())
    assert report["completed_requests"] == 20 and 0 < report["mbu"] <= 1
