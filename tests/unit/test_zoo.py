"""Zoo parameter and FLOP counts against independent references (model cards, configs, papers)."""

import pytest

from perfforge.core.errors import ConfigError
from perfforge.workload.op import OpKind
from perfforge.workload.zoo import MODELS, get_model

# Exact parameter counts from the reference implementations (torchvision / HF transformers,
# counting each tied tensor once).
EXACT_PARAMS = {
    "resnet50": 25_557_032,        # torchvision resnet50 model card
    "gpt2": 124_439_808,           # openai-community/gpt2
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "bert-base": 109_482_240,      # BertModel (with pooler), bert-base-uncased
    "bert-large": 335_141_888,     # BertModel (with pooler), bert-large-uncased
    "llama-2-7b": 6_738_415_616,   # meta-llama/Llama-2-7b-hf
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,   # meta-llama/Meta-Llama-3-8B
    "llama-3-70b": 70_553_706_496,
    "mixtral-8x7b": 46_702_792_704,  # mistralai/Mixtral-8x7B-v0.1
    "vit-b-16": 86_567_656,        # torchvision vit_b_16 model card
}

# GPT-3 paper (Brown et al. 2020, Table 2.1) gives nominal sizes; ours must be within 3% of them.
GPT3_NOMINAL = {"gpt3-125m": 125e6, "gpt3-350m": 350e6, "gpt3-760m": 760e6, "gpt3-1.3b": 1.3e9,
                "gpt3-2.7b": 2.7e9, "gpt3-6.7b": 6.7e9, "gpt3-13b": 13e9, "gpt3-175b": 175e9}


@pytest.mark.parametrize("name,expected", sorted(EXACT_PARAMS.items()))
def test_exact_params(name, expected):
    assert get_model(name, batch=1).params == expected


@pytest.mark.parametrize("name,nominal", sorted(GPT3_NOMINAL.items()))
def test_gpt3_nominal_params(name, nominal):
    assert abs(get_model(name).params / nominal - 1) < 0.03


def test_every_registered_model_builds():
    for name in MODELS.names():
        w = get_model(name, batch=2, seq=None)
        assert w.params > 0 and w.forward_flops > 0 and w.backward_flops > w.forward_flops


def test_resnet50_macs():
    # torchvision model card: 4.09 GFLOPS (multiply-accumulates) at 224x224
    assert get_model("resnet50", batch=1).forward_macs == pytest.approx(4.089e9, rel=1e-3)


def test_gpt2_flops_by_hand():
    s = 1024
    w = get_model("gpt2", batch=1, seq=s)
    h, layers, vocab = 768, 12, 50257
    per_layer_weights = h * 3 * h + h * h + 2 * h * 4 * h  # qkv, out, fc1, fc2
    matmul = 2 * s * (layers * per_layer_weights + h * vocab)  # 2*m*n*k per GEMM, plus the LM head
    attention = layers * 2 * 2 * 12 * (s * (s + 1) / 2) * 64  # QK^T and PV over the causal triangle
    flops = w.flops_by_kind()
    assert flops[OpKind.MATMUL] == pytest.approx(matmul)
    assert flops[OpKind.ATTENTION] == pytest.approx(attention)


def test_llama_decode_reads_kv_cache_and_weights():
    w = get_model("llama-2-7b", batch=1, seq=4096, phase="decode")
    assert w.tokens == 4096 and w.kv_cache_bytes() == pytest.approx(2 * 32 * 4096 * 32 * 128 * 2)
    attn = [op for op in w.ops if op.kind is OpKind.ATTENTION][0]
    assert attn.attrs["seq_q"] == 1 and attn.attrs["seq_kv"] == 4096


def test_unfused_attention_materialises_scores():
    fused = get_model("gpt2", seq=512)
    eager = get_model("gpt2", seq=512, attention_impl="unfused")
    assert eager.params == fused.params
    assert sum(o.bytes for o in eager.ops) > sum(o.bytes for o in fused.ops)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"batch": 0}, "batch must be a positive"), ({"batch": -4}, "batch must be a positive"),
     ({"seq": 4096}, "exceeds its 1024 learned positions"), ({"dtype": "fp12"}, "unknown dtype")],
)
def test_bad_inputs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        get_model("gpt2", **kwargs)


def test_unknown_model_suggests():
    with pytest.raises(Exception, match="did you mean 'llama-2-7b'"):
        get_model("llama-2-7")


def test_eager_attention_scales_and_masks_the_score_matrix():
    """HF's eager attention: QK^T, x scale, + causal mask (decoders only), softmax, PV."""
    gpt = get_model("gpt2", batch=2, seq=64, attention_impl="unfused")
    core = [op for op in gpt.ops if op.layer == "layers.0" and ".attn.core." in op.name]
    assert [op.name.rsplit(".", 1)[-1] for op in core] == ["qk", "scale", "mask", "softmax", "pv"]
    scale = core[1]
    assert scale.kind is OpKind.ELEMENTWISE and scale.outputs == ((2 * 12, 64, 64),)
    bert = get_model("bert-base", batch=2, seq=64, attention_impl="unfused")
    bert_core = [op.name.rsplit(".", 1)[-1] for op in bert.ops if op.layer == "layers.0" and ".attn.core." in op.name]
    assert bert_core == ["qk", "scale", "softmax", "pv"]     # an encoder without padding: no mask
    from perfforge.workload.backward import backward_ops

    assert backward_ops(core[2]) == []                        # the mask's gradient passes through


def test_gelu_new_runs_as_eight_kernels_only_when_eager():
    eager = [op for op in get_model("gpt2", batch=1, seq=32, attention_impl="unfused").ops
             if op.layer == "layers.0" and ".mlp.act" in op.name]
    fused = [op for op in get_model("gpt2", batch=1, seq=32).ops if op.layer == "layers.0" and ".mlp.act" in op.name]
    assert len(eager) == 8 and len(fused) == 1
    assert sum(len(op.inputs) for op in eager) == 10          # two steps read two tensors
    assert all(op.outputs == ((32, 3072),) for op in eager)


def test_training_dropout_adds_hf_dropout_kernels():
    """Dropout 0.1 in training adds HF's dropout kernels (embeddings, attention probabilities when unfused, after
    the attention projection and the MLP); inference and dropout 0 add none; OPT has no attention dropout."""
    from perfforge.api import resolve_workload
    from perfforge.workload.backward import backward_ops

    def drops(model: str, **kw) -> list:
        w = resolve_workload(model, batch=2, seq=64, dtype="fp32", **kw)
        return [op for op in w.ops if op.attrs.get("fn") == "dropout"]

    gpt2 = drops("gpt2", mode="train", attention_impl="unfused", dropout=0.1)
    assert len(gpt2) == 1 + 3 * 12
    probs = next(op for op in gpt2 if op.name == "layers.0.attn.core.dropout")
    assert probs.outputs == ((2 * 12, 64, 64),) and probs.saved_bytes == 2 * 12 * 64 * 64   # a one-byte mask
    assert len(drops("gpt2", mode="train", dropout=0.1)) == 1 + 2 * 12      # fused attention drops inside
    assert drops("gpt2", mode="inference", attention_impl="unfused", dropout=0.1) == []
    assert drops("gpt2", mode="train", attention_impl="unfused") == []
    assert len(drops("opt-1.3b", mode="train", attention_impl="unfused", dropout=0.1)) == 1 + 2 * 24
    (bwd,) = backward_ops(probs)
    n = 2 * 12 * 64 * 64
    assert bwd.bytes_read == n * 4 + n and bwd.bytes_written == n * 4        # dY and the mask in, dX out
    with pytest.raises(ConfigError, match="dropout must be in"):
        resolve_workload("gpt2", mode="train", dropout=1.0)


def test_eager_gelu_keeps_four_tensors_for_its_backward():
    ops = [op for op in get_model("gpt2", batch=1, seq=32, attention_impl="unfused").ops
           if op.layer == "layers.0" and ".mlp.act" in op.name]
    assert sum(op.saved_bytes for op in ops) == 4 * 32 * 3072 * 2       # fp16: x, tanh(.), 0.5x, 1 + tanh(.)


def test_bert_masked_lm_head():
    """``head="mlm"`` is HF's BertForMaskedLM: no pooler (768*768 + 768 parameters fewer), a transform (dense,
    GELU, LayerNorm: 768*768 + 768 + 2*768) and a decoder tied to the word embeddings with its own 30522-wide
    bias: 109,482,240 - 590,592 + 592,128 + 30,522 = 109,514,298 parameters. It scores every token over the
    vocabulary."""
    mlm = get_model("bert-base", batch=2, seq=128, head="mlm")
    assert mlm.params == 109_514_298
    assert not any(o.name.startswith("pooler") for o in mlm.ops)
    decoder = next(o for o in mlm.ops if o.name == "mlm.decoder")
    assert (decoder.attrs["m"], decoder.attrs["n"], decoder.attrs["k"]) == (256, 30522, 768)
    assert (mlm.loss_op.inputs[0]) == (256, 30522)
    assert get_model("bert-base", head="none").params == 109_482_240


@pytest.mark.parametrize("model, head", [("gpt2", "mlm"), ("bert-base", "lm"), ("resnet50", "mlm")])
def test_heads_that_do_not_apply(model, head):
    with pytest.raises(ConfigError, match=f"head '{head}' does not apply"):
        get_model(model, head=head)


def _tiny_bert_pair(hf_class: str, head: str, batch: int):
    """A 2-layer BERT as transformers' ``hf_class`` on the meta device, and the zoo's build of it with ``head``."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    cfg = tf.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256,
                        vocab_size=1000, max_position_embeddings=128)
    with torch.device("meta"):
        module = getattr(tf, hf_class)(cfg)
    from perfforge.workload.models.transformer import TransformerConfig, build_transformer

    zoo = build_transformer(TransformerConfig(name="tiny-bert", layers=2, hidden=64, heads=4, ffn=256, vocab=1000,
                                              arch="encoder", max_positions=128, type_vocab=2, embedding_norm=True,
                                              final_norm=False, post_norm=True, lm_head=False, pooler=True),
                            batch=batch, seq=16, head=head)
    return module, zoo


def test_bert_masked_lm_params_match_transformers():
    module, zoo = _tiny_bert_pair("BertForMaskedLM", "mlm", batch=1)
    assert zoo.params == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("model", ["bert-base", "llama-2-7b", "opt-1.3b"])
def test_eager_graphs_project_qkv_as_hf_does(model):
    """HF's BERT, Llama and OPT modules have separate q/k/v Linear layers: the eager graphs run three GEMMs of
    the same total FLOPs and parameters as the fused graph's one, and keep their shared input once (under
    autocast each GEMM casts the input itself and keeps its own copy)."""
    fused = get_model(model, batch=2, seq=64, attention_impl="fused")
    eager = get_model(model, batch=2, seq=64, attention_impl="sdpa")
    qkv = [o for o in fused.ops if o.name == "layers.0.attn.qkv"]
    parts = [o for o in eager.ops if o.name in ("layers.0.attn.q", "layers.0.attn.k", "layers.0.attn.v")]
    assert len(qkv) == 1 and len(parts) == 3
    assert sum(o.flops for o in parts) == qkv[0].flops and sum(o.params for o in parts) == qkv[0].params
    assert sum(o.saved_bytes for o in parts) == qkv[0].saved_bytes
    amp = get_model(model, batch=2, seq=64, attention_impl="sdpa", dtype="bf16", amp=True)
    amp_parts = [o for o in amp.ops if o.name in ("layers.0.attn.q", "layers.0.attn.k", "layers.0.attn.v")]
    assert sum(o.saved_bytes for o in amp_parts) == 3 * qkv[0].saved_bytes
    assert sum(o.name.startswith("layers.0.attn.") and o.name.endswith(".input_cast") for o in amp.ops) == 3
    # GPT-2's Conv1D projects all three at once in HF too
    assert any(o.name == "layers.0.attn.qkv" for o in get_model("gpt2", batch=1, seq=8, attention_impl="sdpa").ops)


def test_bert_pretraining_head_matches_transformers():
    """``head="pretraining"`` is HF's BertForPreTraining (what NeuSight trains BERT as): the pooler, the masked-LM
    head and the next-sentence classifier; the same parameters as transformers' module."""
    module, zoo = _tiny_bert_pair("BertForPreTraining", "pretraining", batch=2)
    assert zoo.params == sum(p.numel() for p in module.parameters())
    assert zoo.loss_op.inputs[0] == (32, 1000)  # the masked-LM logits, every token
    assert [o.name for o in zoo.ops[-3:]] == ["mlm.norm", "mlm.decoder", "nsp.classifier"]


def test_head_from_the_cli_and_from_a_config_json(tmp_path):
    import json
    import subprocess
    import sys

    from perfforge.api import resolve_workload

    cfg = {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12,
           "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert resolve_workload(str(path), head="mlm").params == get_model("bert-base", head="mlm").params == 109_514_298
    assert resolve_workload(str(path)).params == 109_482_240
    out = subprocess.run([sys.executable, "-m", "perfforge", "predict", "--model", "bert-base", "--hardware",
                          "h100-sxm5-80gb", "--head", "pretraining", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["params"] == 110_106_428  # HF BertForPreTraining, bert-base-uncased
    bad = subprocess.run([sys.executable, "-m", "perfforge", "predict", "--model", "gpt2", "--hardware",
                          "h100-sxm5-80gb", "--head", "mlm"], capture_output=True, text=True)
    assert bad.returncode == 2 and "allowed: lm" in bad.stderr and "Traceback" not in bad.stderr


def test_opt_runs_to_its_2048_positions_not_its_2050_table_rows():
    # OPTLearnedPositionalEmbedding keeps 2 rows before position 0 (offset 2): 2050 rows, 2048 usable positions
    from perfforge.core.errors import ConfigError
    from perfforge.workload.zoo import get_model

    assert get_model("opt-1.3b", batch=1, seq=2048).params == 1_315_758_080
    with pytest.raises(ConfigError, match="seq 2049 exceeds its 2048 learned positions"):
        get_model("opt-1.3b", batch=1, seq=2049)
