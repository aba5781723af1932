"""Mixture-of-experts layers run only the experts their tokens are routed to: one decoding token reads k experts'
weights, not all of them; enough tokens reach every expert. The parameters are every expert's either way."""

import pytest

from perfforge.workload.zoo import get_model

# Mixtral-8x7B (mistralai/Mixtral-8x7B-v0.1 config.json): 8 experts, top-2, hidden 4096, expert MLP 14336
E, K, H, F = 8, 2, 4096, 14336


def _experts(workload):
    return [o for o in workload.ops if ".experts." in o.name and o.kind.value == "matmul"]


def test_one_decoding_token_reads_top_k_experts():
    decode = get_model("mixtral-8x7b", batch=1, seq=1024, phase="decode", dtype="bf16")
    experts = _experts(decode)
    assert len(experts) == 2 * 32
    up = next(o for o in experts if o.name.endswith("experts.up"))
    down = next(o for o in experts if o.name.endswith("experts.down"))
    assert up.attrs["batch"] == K and up.attrs["m"] == 1
    assert up.flops == 2 * K * H * 2 * F and down.flops == 2 * K * F * H            # one token through k experts
    assert up.bytes_read == (K * H + K * H * 2 * F) * 2                               # k experts' weights, bf16
    assert up.params == E * H * 2 * F and down.params == E * F * H                    # every expert's parameters
    assert decode.params == get_model("mixtral-8x7b", batch=8, seq=512, dtype="bf16").params


@pytest.mark.parametrize("tokens,active", [(1, 2), (2, 4), (4, 5), (16, 8), (4096, 8)])
def test_experts_reached_grow_with_tokens(tokens, active):
    """Expected distinct experts under uniform routing, e * (1 - (1 - k/e)^tokens), rounded: 2, 3.5, 5.5, 7.9."""
    w = get_model("mixtral-8x7b", batch=tokens, seq=1, phase="decode", dtype="bf16") if tokens < 4096 else \
        get_model("mixtral-8x7b", batch=1, seq=tokens, dtype="bf16")
    up = next(o for o in _experts(w) if o.name.endswith("experts.up"))
    assert up.attrs["batch"] == active
    assert up.attrs["batch"] * up.attrs["m"] >= tokens * K   # every token-expert pair is computed
