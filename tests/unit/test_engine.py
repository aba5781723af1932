"""Model-level predictions: totals, memory footprint and the does-not-fit verdict."""

import json

import pytest

import perfforge
from perfforge.core.errors import ConfigError


def test_result_contract_fields():
    r = perfforge.predict("resnet50", "a100-sxm4-80gb", mode="train", batch=32, dtype="fp16")
    d = r.to_dict()
    for key in ("step_time_s", "throughput_samples_per_s", "params", "flops_per_step", "mfu", "memory_bytes",
                "fits", "breakdown"):
        assert key in d
    assert {"name", "kind", "time_s", "flops", "bytes"} <= set(d["breakdown"][0])
    assert d["step_time_s"] == pytest.approx(sum(row["time_s"] for row in d["breakdown"]))
    json.dumps(d)  # serialisable
    assert r.unmodelled == ()


def test_training_memory_adam_mixed_precision():
    r = perfforge.predict("gpt2", "a100-sxm4-80gb", mode="train", batch=1, seq=128, dtype="bf16", optimizer="adam")
    p = r.params
    # bf16 weights (2) + bf16 grads (2) + fp32 master, m, v (12) = 16 bytes per parameter
    assert r.memory.weights + r.memory.gradients + r.memory.optimizer_states == pytest.approx(16 * p)


def test_training_memory_follows_a_wider_dtype():
    # fp64 training keeps fp64 gradients and Adam states (PyTorch allocates states like the parameter), no master
    r = perfforge.predict("resnet50", "h100-sxm5-80gb", mode="train", batch=8, dtype="fp64", optimizer="adam")
    p = r.params
    assert (r.memory.weights, r.memory.gradients, r.memory.optimizer_states) == (8 * p, 8 * p, 16 * p)
    # eight GPUs add DDP's flat buckets in the gradients' own dtype
    dp = perfforge.train("resnet50", "h100-sxm5-80gb", gpus=8, batch=8, dtype="fp64", optimizer="adam")
    assert dp.memory.gradients == 16 * p


def test_int8_training_is_refused_with_the_allowed_dtypes():
    with pytest.raises(ConfigError, match="int8 is an inference dtype.*allowed for training: fp64, fp32"):
        perfforge.predict("resnet50", "h100-sxm5-80gb", mode="train", batch=8, dtype="int8")


def test_recompute_saves_memory_and_costs_time():
    base = perfforge.predict("gpt2-large", "a100-sxm4-80gb", mode="train", batch=8, seq=1024)
    rc = perfforge.predict("gpt2-large", "a100-sxm4-80gb", mode="train", batch=8, seq=1024, recompute=True)
    assert rc.memory.activations < base.memory.activations / 3
    assert rc.step_time_s > base.step_time_s
    assert rc.mfu < base.mfu  # recomputed FLOPs are not useful FLOPs


def test_does_not_fit_verdict():
    r = perfforge.predict("llama-2-70b", "a100-sxm4-80gb", mode="train", batch=1, seq=4096, dtype="bf16")
    assert not r.fits and r.memory_bytes > 70e9 * 16
    small = perfforge.predict("gpt2", "a100-sxm4-80gb", mode="inference", batch=1, seq=128)
    assert small.fits


def test_decode_is_memory_bound_on_weights():
    r = perfforge.predict("llama-2-7b", "a100-sxm4-80gb", mode="decode", batch=1, seq=512, dtype="fp16")
    weights_time = 6.74e9 * 2 / 2039e9  # every weight read once per token at datasheet bandwidth
    assert weights_time < r.step_time_s < 3 * weights_time
    assert r.memory.kv_cache == pytest.approx(2 * 32 * 512 * 32 * 128 * 2)


def test_inference_ops_are_forward_only():
    r = perfforge.predict("bert-large", "a100-sxm4-80gb", mode="inference", batch=8, seq=384)
    assert {rec.phase for rec in r.breakdown} == {"forward"}
    assert r.memory.gradients == 0 and r.memory.optimizer_states == 0


def test_chrome_trace_is_sequential():
    r = perfforge.predict("gpt2", "h100-sxm5-80gb", mode="inference", batch=1, seq=64)
    ev = [e for e in r.to_chrome_trace()["traceEvents"] if e["ph"] == "X"]
    assert len(ev) == len(r.breakdown)
    for a, b in zip(ev, ev[1:]):
        assert b["ts"] == pytest.approx(a["ts"] + a["dur"])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"hardware": "a100"}, "unknown hardware"),
        ({"batch": -1}, "batch"),
        ({"mode": "serve"}, "mode"),
        ({"optimizer": "adamm"}, "optimizer"),
        ({"dtype": "fp13"}, "dtype"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"hardware": "a100-sxm4-80gb", **kwargs}
    with pytest.raises(ConfigError, match=match):
        perfforge.predict("gpt2", **args)


def test_decode_needs_a_decoder():
    with pytest.raises(ConfigError, match="decoder"):
        perfforge.predict("bert-base", "a100-sxm4-80gb", mode="decode")


def test_lars_reads_weights_and_gradients_once_more_than_momentum_sgd():
    # LARS = momentum SGD + a norm pass over fp16 gradients (2 bytes) and fp32 master weights (4 bytes)
    from perfforge.core.dtypes import DType
    from perfforge.workload.optimizer import get_optimizer, optimizer_op

    p = 1000
    sgd = optimizer_op(get_optimizer("sgd_momentum"), p, DType.FP16)
    lars = optimizer_op(get_optimizer("lars"), p, DType.FP16)
    assert lars.bytes_read - sgd.bytes_read == (2 + 4) * p
    assert lars.bytes_written == sgd.bytes_written
    assert lars.flops == 10 * p
    r = perfforge.predict("resnet50", "a100-sxm4-80gb", mode="train", batch=32, dtype="fp16", optimizer="lars")
    m = perfforge.predict("resnet50", "a100-sxm4-80gb", mode="train", batch=32, dtype="fp16", optimizer="sgd_momentum")
    assert r.memory.optimizer_states == m.memory.optimizer_states  # one momentum buffer each
    assert r.step_time_s > m.step_time_s


def test_lamb_is_adam_plus_a_norm_pass():
    from perfforge.core.dtypes import DType
    from perfforge.workload.optimizer import get_optimizer, optimizer_op, optimizer_state_bytes_per_param

    adam, lamb = get_optimizer("adam"), get_optimizer("lamb")
    assert optimizer_state_bytes_per_param(lamb, DType.BF16) == optimizer_state_bytes_per_param(adam, DType.BF16) == 12
    p = 1000
    assert optimizer_op(lamb, p, DType.BF16).bytes_read - optimizer_op(adam, p, DType.BF16).bytes_read == (2 + 4) * p
