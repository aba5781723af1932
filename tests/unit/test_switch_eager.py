"""Switch's eager graph (NeuSight's padded experts kernel by kernel, host syncs, dropout), the engine's pricing of
host syncs, and the gradient-accumulation step."""

from __future__ import annotations

import pytest

from perfforge import predict
from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.engines.analytical.engine import eager_step_time
from perfforge.result import OpRecord
from perfforge.workload.models.switch import SwitchConfig, build_switch
from perfforge.workload.optimizer import get_optimizer, optimizer_op, optimizer_state_bytes_per_param
from perfforge.workload.zoo import get_model

# the two-layer Switch of perfforge.profiling.neusight_e2e's tiny suite
TINY = SwitchConfig(name="tiny-switch", layers=2, d_model=64, d_ff=128, heads=4, d_kv=16, experts=4, expert_capacity=8,
                    sparse_step=2, vocab=256, source="test")


def _rec(t: float, phase: str = "forward") -> OpRecord:
    return OpRecord("op", "elementwise", "l", phase, t, 0.0, 0.0, "memory")


def test_host_syncs_split_the_step_into_stretches():
    per_op = 10e-6
    recs = [_rec(50e-6), _rec(1e-6), _rec(1e-6), _rec(100e-6, "backward_input")]
    # no sync: max(GPU 152 us, host 3 x 10 us)
    step, host = eager_step_time(recs, [False] * 4, per_op)
    assert step == pytest.approx(152e-6) and host == pytest.approx(30e-6)
    # a sync after the first op: max(50, 10) + max(1 + 1 + 100, 20)
    step, host = eager_step_time(recs, [True, False, False, False], per_op)
    assert step == pytest.approx(152e-6) and host == pytest.approx(30e-6)
    # host-bound stretches: each pays its issue time
    small = [_rec(1e-6)] * 4
    step, _ = eager_step_time(small, [False, True, False, True], per_op)
    assert step == pytest.approx(2 * 20e-6)
    # a sync never makes a step faster
    for syncs in ([False] * 4, [True] * 4, [False, True, True, False]):
        assert eager_step_time(recs, syncs, per_op)[0] >= max(sum(r.time_s for r in recs), 3 * per_op) - 1e-12


def test_padded_experts_kernel_by_kernel():
    w = build_switch(TINY, batch=2, seq=32, dtype=DType.FP32, attention_impl="unfused")
    fused = build_switch(TINY, batch=2, seq=32, dtype=DType.FP32, attention_impl="fused")
    sparse_layers = 2   # layer 1 of each stack
    syncs = [o for o in w.ops if o.attrs.get("host_sync")]
    assert len(syncs) == sparse_layers * TINY.experts * 3   # count, gather's nonzero, scatter's nonzero
    wi = [o for o in w.ops if o.name.endswith(".wi") and ".expert" in o.name]
    assert len(wi) == sparse_layers * TINY.experts
    assert {(o.attrs["m"], o.attrs["n"], o.attrs["k"]) for o in wi} == {(2 * 8, 128, 64)}
    # the same expert FLOPs as the fused graph's batched GEMMs, and the same parameters
    expert_flops = sum(o.flops for o in w.ops if ".expert" in o.name and o.kind.value == "matmul")
    batched = sum(o.flops for o in fused.ops if ".experts.w" in o.name)
    assert expert_flops == pytest.approx(batched) and w.params == fused.params
    # counts, masks and the zeroed buffer are outside autograd; the gather and scatter copies are not
    bwd = {o.name for o in w.backward}
    assert not any(".count" in n or ".nonzero" in n or ".zeros" in n or ".mask" in n for n in bwd)
    assert any(n.endswith(".gather.bwd") for n in bwd) and not any(".experts.clone" in n for n in bwd)


def test_syncs_cost_time_on_a_gpu():
    """The eager graph's syncs leave the GPU idle: its step exceeds its kernel sum."""
    r = predict("switch-xl", "h100-sxm5-80gb", batch=1, seq=512, dtype="fp32", mode="inference",
                attention_impl="unfused")
    kernels = sum(x.time_s for x in r.breakdown if x.stream == "compute")
    idle = sum(x.time_s for x in r.breakdown if x.name == "host-bound idle")
    assert idle > 0 and r.step_time_s == pytest.approx(kernels + idle)


def test_switch_dropout_kernels_by_hand():
    """T5-style dropout sites: embeddings and final norms (2 per stack), attention probabilities and outputs
    (1 + 1 per attention), each FFN's output, the dense FFN's and every expert's activations."""
    w = build_switch(TINY, batch=2, seq=32, dtype=DType.FP32, attention_impl="unfused", dropout=0.1)
    drops = [o for o in w.ops if o.attrs.get("fn") == "dropout"]
    enc = 2 * 2 + 2 + 1 + TINY.experts      # 2 self-attn x (probs, out), 2 FFN outputs, 1 dense act, 4 experts
    dec = 2 * 4 + 2 + 1 + TINY.experts      # self- and cross-attention
    assert len(drops) == enc + dec + 4
    fused = build_switch(TINY, batch=2, seq=32, dtype=DType.FP32, attention_impl="fused", dropout=0.1)
    # the fused graph drops inside its attention kernel and runs the experts batched
    assert len([o for o in fused.ops if o.attrs.get("fn") == "dropout"]) == len(drops) - 6 - 2 * (TINY.experts - 1)
    assert get_model("switch-xl", dropout=0.1, dtype="fp32").meta == get_model("switch-xl", dtype="fp32").meta
    with pytest.raises(ConfigError, match="dropout must be in"):
        build_switch(TINY, dropout=1.5)


def test_switch_dropout_sites_match_transformers():
    """The same number of dropout calls as transformers' SwitchTransformers in train mode, padded experts."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from perfforge.profiling import neusight_e2e as ne

    model, _, inputs = ne.build(ne.E2ECase("tiny-switch", "train", 2, 32), "cpu")
    calls = []
    original = torch.nn.functional.dropout

    def counting(x, *a, **k):
        calls.append(tuple(x.shape))
        return original(x, *a, **k)

    torch.nn.functional.dropout = counting
    try:
        model(**inputs)
    finally:
        torch.nn.functional.dropout = original
        ne._patch_switch(False)
    w = build_switch(TINY, batch=2, seq=32, dtype=DType.FP32, attention_impl="unfused", dropout=0.1)
    assert len(calls) == len([o for o in w.ops if o.attrs.get("fn") == "dropout"])


def test_gradient_accumulation_step_by_hand():
    opt = get_optimizer("grad_accumulate")
    op = optimizer_op(opt, 1000, DType.FP32)
    assert (op.bytes_read, op.bytes_written) == (8000, 4000)   # grad += new: read both, write one
    assert optimizer_state_bytes_per_param(opt, DType.FP16) == 0
    acc = predict("gpt2", "h100-sxm5-80gb", batch=8, seq=512, dtype="fp32", mode="train", optimizer="grad_accumulate")
    adam = predict("gpt2", "h100-sxm5-80gb", batch=8, seq=512, dtype="fp32", mode="train", optimizer="adamw")
    step = sum(x.time_s for x in acc.breakdown if x.phase == "optimizer")
    assert 0 < step < sum(x.time_s for x in adam.breakdown if x.phase == "optimizer")
    assert acc.memory.optimizer_states == 0 < adam.memory.optimizer_states


def test_gradient_accumulation_is_single_device():
    from perfforge.scenario import make_scenario

    with pytest.raises(ConfigError, match="grad_accumulate is one device.s backward"):
        make_scenario(model="gpt2", hardware="h100-sxm5-80gb", mode="train", optimizer="grad_accumulate", gpus=8)
