"""Mixed precision in the zoo's builders (``amp=True``): torch.autocast's rules written down, checked by hand and,
where torch and transformers are installed, against the same HF module traced under real autocast rules."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from perfforge.api import predict, resolve_workload
from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.workload.backward import backward_ops
from perfforge.workload.op import OpKind, Phase
from perfforge.workload.optimizer import get_optimizer
from perfforge.workload.precision import Precision
from perfforge.workload.zoo import MODELS, get_model

GPT2_LAYERS, GPT2_HIDDEN, GPT2_VOCAB = 12, 768, 50257


def _casts(w, of: str | None = None):
    ops = [o for o in w.ops if "cast_of" in o.attrs]
    if of == "activation":
        return [o for o in ops if o.attrs["cast_of"] == "activation"]
    if of == "weight":
        return [o for o in ops if o.attrs["cast_of"] != "activation"]
    return ops


def test_pure_precision_adds_nothing():
    pure = get_model("gpt2", batch=2, seq=16, dtype="bf16", attention_impl="unfused", dropout=0.1)
    assert not _casts(pure) and not pure.amp and pure.param_dtype is DType.BF16
    assert Precision(DType.BF16).cast("x", (4, 4), DType.BF16, DType.BF16) == []


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "fp8"])
def test_amp_needs_a_half_precision_dtype(dtype):
    with pytest.raises(ConfigError, match="allowed dtypes with amp: fp16, bf16"):
        get_model("gpt2", batch=1, seq=8, dtype=dtype, amp=True)


def test_gpt2_amp_graph_by_hand():
    b, s = 2, 16
    tokens = b * s
    w = get_model("gpt2", batch=b, seq=s, dtype="bf16", amp=True)
    assert w.amp and w.meta["amp"] == "bf16" and w.param_dtype is DType.FP32
    for op in w.ops:
        if op.kind in (OpKind.MATMUL, OpKind.ATTENTION):
            assert op.dtype is DType.BF16, op.name
        if op.kind in (OpKind.LAYER_NORM, OpKind.EMBEDDING):
            assert op.dtype is DType.FP32, op.name
    # one cast per weight and one per bias (autocast casts each tensor argument); the tied LM head casts the
    # shared embedding table and has no bias
    linears = [o for o in w.ops if o.kind is OpKind.MATMUL]
    weight_casts = _casts(w, "weight")
    assert len(linears) == 4 * GPT2_LAYERS + 1
    assert sum(o.name.endswith(".weight_cast") for o in weight_casts) == len(linears)
    assert sum(o.name.endswith(".bias_cast") for o in weight_casts) == 4 * GPT2_LAYERS
    cast_elems = sum(o.attrs["numel"] for o in weight_casts)
    assert cast_elems == sum(o.params for o in linears) + GPT2_VOCAB * GPT2_HIDDEN
    for o in weight_casts:  # fp32 read, bf16 written, the copy kept for the GEMM's backward
        n = o.attrs["numel"]
        assert (o.bytes_read, o.bytes_written, o.saved_bytes) == (4 * n, 2 * n, 2 * n)
    # fused graph: the QKV and MLP-up projections read an fp32 norm output; the LM head too
    acts = _casts(w, "activation")
    assert len(acts) == 2 * GPT2_LAYERS + 1
    assert all((o.bytes_read, o.bytes_written) == (4 * tokens * GPT2_HIDDEN, 2 * tokens * GPT2_HIDDEN) for o in acts)
    # the residual adds run in fp32: the fp32 stream plus a bf16 branch
    res = [o for o in w.ops if o.name.endswith(".residual")]
    n = tokens * GPT2_HIDDEN
    assert len(res) == 2 * GPT2_LAYERS
    assert all(o.dtype is DType.FP32 and o.bytes_read == 6 * n and o.bytes_written == 4 * n for o in res)


def test_gpt2_amp_eager_graph_casts_around_softmax_and_gelu():
    w = get_model("gpt2", batch=2, seq=16, dtype="bf16", amp=True, attention_impl="unfused")
    # per block: QKV input, softmax in and out, GELU's x for the fp32 pow, MLP-down input; plus MLP-up input
    assert len(_casts(w, "activation")) == 6 * GPT2_LAYERS + 1
    gelu = [o for o in w.ops if ".mlp.act." in o.name and "cast" not in o.name]
    assert [o.dtype.value for o in gelu[:8]] == ["bf16"] + ["fp32"] * 7
    softmax = [o for o in w.ops if o.kind is OpKind.SOFTMAX]
    assert all(o.dtype is DType.FP32 for o in softmax)
    # sdpa: HF's default, a fused attention kernel and the eager GELU (4 casts per block)
    sdpa = get_model("gpt2", batch=2, seq=16, dtype="bf16", amp=True, attention_impl="sdpa")
    assert sum(o.kind is OpKind.ATTENTION for o in sdpa.ops) == GPT2_LAYERS
    assert len(_casts(sdpa, "activation")) == 4 * GPT2_LAYERS + 1


def test_cast_backward_swaps_widths_and_data_casts_have_none():
    w = get_model("resnet50", batch=4, dtype="fp16", amp=True)
    image_cast, stem = w.ops[0], w.ops[2]
    assert image_cast.attrs["cast_of"] == "activation" and image_cast.attrs["input_grad"] is False
    assert backward_ops(image_cast) == []
    assert stem.kind is OpKind.CONV2D and [b.name for b in backward_ops(stem)] == [f"{stem.name}.wgrad"]
    weight_cast = w.ops[1]
    (bwd,) = backward_ops(weight_cast)
    assert bwd.phase is Phase.BACKWARD_WEIGHT
    assert (bwd.bytes_read, bwd.bytes_written) == (weight_cast.bytes_written, weight_cast.bytes_read)
    convs = [o for o in w.ops if o.kind is OpKind.CONV2D]
    assert len(_casts(w, "weight")) == len(convs) + 2  # bias-free convs, and the classifier's weight and bias
    assert len(_casts(w, "activation")) == 1  # batch norm and ReLU take fp16 activations as they are


def test_amp_training_memory_and_optimizer():
    """fp32 weights and gradients, Adam's two fp32 states and no separate master copy: 16 bytes a parameter, the
    same as the pure-bf16 convention's 2 + 2 + 12; the bf16 weight copies live with the activations."""
    amp = resolve_workload("gpt2", mode="train", batch=2, seq=64, dtype="bf16", amp=True)
    pure = resolve_workload("gpt2", mode="train", batch=2, seq=64, dtype="bf16")
    p = amp.params
    assert p == pure.params
    r = predict(amp, "h100-sxm5-80gb", mode="train", optimizer="adamw")
    assert (r.memory.weights, r.memory.gradients, r.memory.optimizer_states) == (4 * p, 4 * p, 8 * p)
    copies = sum(o.saved_bytes for o in _casts(amp, "weight"))
    linear_params = sum(o.params for o in amp.ops if o.kind is OpKind.MATMUL)
    assert copies == 2 * (linear_params + GPT2_VOCAB * GPT2_HIDDEN)
    assert r.memory.activations == pytest.approx(amp.activation_bytes) and amp.activation_bytes > copies
    opt = amp.training_ops(get_optimizer("adamw"))[-1]
    assert (opt.bytes_read, opt.bytes_written) == (p * (4 + 4 + 8), p * (4 + 8))
    # the loss runs in fp32 after a cast of the bf16 logits
    cast, loss = amp.loss_ops
    n = 2 * 64 * GPT2_VOCAB
    assert (cast.bytes_read, cast.bytes_written) == (2 * n, 4 * n) and loss.dtype is DType.FP32


@pytest.mark.parametrize("model", ["gpt2", "bert-base", "llama-2-7b", "mixtral-8x7b", "switch-xl", "vit-b-16",
                                   "resnet50"])
def test_amp_is_never_faster_than_the_cast_model(model):
    """The same GEMMs, plus casts and fp32 traffic: autocast can only add time."""
    seq = None if model in ("vit-b-16", "resnet50") else 128
    for mode in ("inference", "train"):
        kw = dict(mode=mode, batch=2, seq=seq, dtype="bf16")
        pure = predict(model, "h100-sxm5-80gb", **kw)
        amp = predict(model, "h100-sxm5-80gb", amp=True, **kw)
        assert amp.step_time_s > pure.step_time_s
        assert amp.flops_per_step >= pure.flops_per_step


def test_every_zoo_model_builds_under_amp():
    for name in MODELS.names():
        w = get_model(name, batch=1, dtype="fp16", amp=True)
        assert w.amp and _casts(w, "weight"), name


def test_scenario_rejects_amp_where_it_is_not_modelled():
    with pytest.raises(ConfigError, match="allowed dtypes with amp: fp16, bf16"):
        predict("gpt2", "h100-sxm5-80gb", dtype="fp32", amp=True)
    from perfforge.api import train

    with pytest.raises(ConfigError, match="amp: autocast is modelled for single-device and data-parallel"):
        train("gpt2", "h100-sxm5-80gb", gpus=8, tp=2, batch=2, seq=128, dtype="bf16", amp=True)
    with pytest.raises(ConfigError, match="allowed: fused, unfused"):
        get_model("switch-xl", batch=1, attention_impl="sdpa")


def test_cli_amp_flag_and_its_error():
    run = [sys.executable, "-m", "perfforge", "predict", "--model", "gpt2", "--hardware", "h100-sxm5-80gb",
           "--mode", "train", "--batch", "2", "--seq", "128"]
    ok = subprocess.run([*run, "--dtype", "bf16", "--amp", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    import json

    assert json.loads(ok.stdout)["precision"] == "amp"
    cast = subprocess.run([*run, "--dtype", "bf16", "--json"], capture_output=True, text=True)
    assert json.loads(cast.stdout)["precision"] == "cast"
    bad = subprocess.run([*run, "--dtype", "fp32", "--amp"], capture_output=True, text=True)
    assert bad.returncode == 2 and "amp" in bad.stderr and "Traceback" not in bad.stderr


def test_zoo_amp_matches_the_traced_hf_module():
    """The zoo's GPT-2 with sdpa under amp launches the casts that tracing HF's GPT2LMHeadModel under autocast's
    rules records: the same weight elements cast, and the same activation casts per block."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    from perfforge.api import from_torch

    cfg = tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64)
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        module = tf.GPT2Model(cfg)
    ids = torch.zeros(2, 16, dtype=torch.long, device="meta")
    traced = from_torch(module, ids, amp="bf16")
    from perfforge.workload.models.transformer import TransformerConfig, build_transformer

    zoo = build_transformer(TransformerConfig(name="tiny", layers=2, hidden=64, heads=4, ffn=256, vocab=1000,
                                              max_positions=64, activation="gelu_tanh", lm_head=False,
                                              final_norm=True), batch=2, seq=16, dtype=DType.BF16, amp=True,
                            attention_impl="sdpa")

    def per_block(w):  # (block index, elements) of every activation cast inside the blocks
        found = (re.search(r"\.(\d+)(\.|$)", o.layer) for o in _casts(w, "activation"))
        return sorted((int(m.group(1)), o.attrs["numel"]) for m, o in zip(found, _casts(w, "activation")) if m)

    # the trace casts each weight and bias on its own, the zoo one copy per layer: the same elements
    assert sum(o.attrs["numel"] for o in _casts(traced, "weight")) == sum(o.attrs["numel"] for o in _casts(zoo, "weight"))
    assert per_block(traced) == per_block(zoo) and len(per_block(zoo)) == 2 * 4
