"""Megatron-LM's published GPT shapes: parameter counts by hand, the published layouts run, and invariants."""

import pytest

import perfforge
from perfforge.workload.models.megatron import SHAPES, megatron_config
from perfforge.workload.zoo import MODELS, get_model


def params_by_hand(layers: int, h: int, vocab: int = 51200, seq: int = 2048) -> int:
    # per layer: QKV 3h^2 + 3h, out h^2 + h, MLP 8h^2 + 5h, two LayerNorms 4h -> 12h^2 + 13h
    # embeddings (shared with the LM head): vocab x h + positions seq x h; final LayerNorm 2h
    return layers * (12 * h * h + 13 * h) + vocab * h + seq * h + 2 * h


@pytest.mark.parametrize("name,nominal", [("megatron-gpt-22b", 22e9), ("megatron-gpt-175b", 175e9),
                                          ("megatron-gpt-530b", 530e9), ("megatron-gpt-1t", 1e12)])
def test_parameter_counts(name, nominal):
    layers, h, _, _ = SHAPES[name]
    w = get_model(name, batch=1)
    assert w.params == params_by_hand(layers, h)
    assert abs(w.params / nominal - 1) < 0.03  # the papers' nominal sizes


def test_registered_in_the_zoo():
    assert all(name in MODELS for name in SHAPES)
    assert megatron_config("megatron-gpt-1t").heads == 160


def test_published_22b_layout_runs_and_tp_comm_is_on_the_critical_path():
    r = perfforge.train("megatron-gpt-22b", "a100-sxm4-80gb", gpus=8, tp=8, batch=4, microbatches=1, seq=2048,
                        dtype="fp16", recompute=True)
    e = r.extra
    # full recomputation replays the forward: 2 (fwd) + 2 (bwd) + 2 (recomputed fwd) TP all-reduces per layer
    assert e["tp_comm_s"] == pytest.approx(48 * 6 * e["tp_allreduce_s"])
    assert r.fits and r.step_time_s > e["compute_s"] + e["tp_comm_s"] - 1e-12


def test_more_gpus_never_more_flops_per_gpu():
    kw = dict(tp=8, seq=2048, dtype="fp16", recompute=True)
    small = perfforge.train("megatron-gpt-175b", "a100-sxm4-80gb", gpus=64, pp=8, batch=16, microbatches=16, **kw)
    big = perfforge.train("megatron-gpt-175b", "a100-sxm4-80gb", gpus=128, pp=16, batch=16, microbatches=16, **kw)
    assert big.flops_per_step / big.extra["gpus"] <= small.flops_per_step / small.extra["gpus"]
