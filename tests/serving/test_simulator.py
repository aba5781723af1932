"""Scheduler semantics, hand-computed latencies, and the fast-forward's exactness."""

import numpy as np
import pytest

from perfforge.serving.batch_time import StageTimer
from perfforge.serving.requests import RequestSet
from perfforge.serving.run import simulate
from perfforge.serving.spec import make_spec
from tests.serving.conftest import DECODE_ATTN, PREFILL_ATTN, A, B

LAYERS = 32  # llama-2-7b
PER_LAYER_OPS = 8  # norm1, qkv, out, norm2, up, act, down, add (no rope/all-reduce/emb/head in the hand table)


def _reqs(arrivals, prefill, decode):
    n = len(arrivals)
    return RequestSet(np.asarray(arrivals, float), np.full(n, prefill, dtype=np.int64) if np.isscalar(prefill)
                      else np.asarray(prefill), np.full(n, decode, dtype=np.int64) if np.isscalar(decode)
                      else np.asarray(decode))


def _step(tokens, attn):
    """One iteration by hand: every token op is A + B*tokens per layer, plus the attention calls."""
    return LAYERS * (PER_LAYER_OPS * (A + B * tokens) + attn)


def test_single_request_latencies_by_hand(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="vllm")
    r = simulate(spec, _reqs([0.0], 512, 10), hand_table)
    ttft = _step(512, PREFILL_ATTN)
    decode_iter = _step(1, DECODE_ATTN)
    s = r.output.state
    assert s.first_token_at[0] == pytest.approx(ttft, rel=1e-9)
    assert s.completed_at[0] == pytest.approx(ttft + 9 * decode_iter, rel=1e-9)
    assert r.summary["tpot_p50_s"] == pytest.approx(decode_iter, rel=1e-9)
    assert r.summary["tbt_p99_s"] == pytest.approx(decode_iter, rel=1e-9)


def test_vllm_batches_prefills_first_then_decodes(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="vllm")
    r = simulate(spec, _reqs([0.0, 0.0, 0.0], 1000, 5), hand_table, exact=True)
    log = r.output.log
    assert log.prefill_tokens[0] == 3000 and log.decode_tokens[0] == 0
    assert all(p == 0 for p in log.prefill_tokens[1:])
    # 3 x 1000 prompt tokens in one batch; then 4 decode iterations of batch 3
    ttft = _step(3000, 3 * PREFILL_ATTN)
    assert r.output.state.first_token_at == pytest.approx([ttft] * 3, rel=1e-9)
    assert r.output.state.completed_at[0] == pytest.approx(ttft + 4 * _step(3, DECODE_ATTN), rel=1e-9)


def test_vllm_token_budget_splits_prefills(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="vllm", max_tokens_per_batch=2048, max_tokens=2048)
    r = simulate(spec, _reqs([0.0, 0.0, 0.0], 1000, 5), hand_table, exact=True)
    assert r.output.log.prefill_tokens[:2] == [2000, 1000]


def test_sarathi_chunks_prompts_with_decodes(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="sarathi", chunk_size=512)
    r = simulate(spec, _reqs([0.0, 1e-9], [1200, 100], 4), hand_table, exact=True)
    log = r.output.log
    # 1200 = 512 + 512 + 176; the second request's prompt rides along in the third chunk's spare budget
    assert log.prefill_tokens[:3] == [512, 512, 176 + 100]
    assert log.decode_tokens[3] == 2


def test_orca_joins_running_decodes(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="orca")
    t1 = _step(500, PREFILL_ATTN) * 1.5  # arrives while the first request decodes
    r = simulate(spec, _reqs([0.0, t1], 500, 50), hand_table, exact=True)
    mixed = [i for i, (p, d) in enumerate(zip(r.output.log.prefill_tokens, r.output.log.decode_tokens)) if p and d]
    assert mixed, "orca runs a new prompt in the same iteration as running decodes"


def test_static_batch_waits_for_its_longest_member(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="static")
    r = simulate(spec, _reqs([0.0, 0.0, 1e-6], 100, [5, 20, 5]), hand_table, exact=True)
    s = r.output.state
    # the third request cannot join until the 20-token member is done
    assert s.scheduled_at[2] == pytest.approx(s.completed_at[1])
    assert r.output.log.size[1] == 2   # finished members keep their slots (padding)


def test_preemption_recomputes_and_completes_everything(hand_table):
    spec = make_spec(model="llama-2-7b", scheduler="vllm", memory_fraction=0.19, requests=60)
    reqs = _reqs(np.zeros(60), 1500, 1500)
    r = simulate(spec, reqs, hand_table)
    assert r.summary["preemptions"] > 0
    assert r.summary["completed_requests"] == 60
    assert (r.output.state.processed == reqs.prefill + reqs.decode).all()


LOADS = {"low": 1.0, "near": 8.0, "over": 40.0}


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "orca", "static"])
@pytest.mark.parametrize("load", list(LOADS))
def test_fast_forward_equals_stepping(scheduler, load):
    spec = make_spec(model="llama-2-7b", scheduler=scheduler, qps=LOADS[load], requests=120, length="uniform",
                     min_tokens=200, max_tokens=2048, prefill_to_decode_ratio=2.0,
                     memory_fraction=0.25 if load == "over" else 0.9)
    fast = simulate(spec)
    step = simulate(spec, exact=True)
    for field in ("first_token_at", "completed_at", "scheduled_at", "restarts"):
        np.testing.assert_allclose(getattr(fast.output.state, field), getattr(step.output.state, field),
                                   rtol=1e-9, atol=1e-12)
    for key in ("ttft_p99_s", "tpot_p50_s", "tbt_p50_s", "tbt_p99_s", "preemptions", "e2e_p99_s"):
        assert fast.summary[key] == pytest.approx(step.summary[key], rel=1e-9)
    assert fast.summary["events"] <= step.summary["events"]


def test_more_replicas_never_slower():
    base = dict(model="llama-2-7b", qps=12.0, requests=200)
    one = simulate(make_spec(**base, replicas=1)).summary
    two = simulate(make_spec(**base, replicas=2)).summary
    assert two["ttft_p99_s"] <= one["ttft_p99_s"]
    assert two["e2e_p50_s"] <= one["e2e_p50_s"]


def test_pipeline_parallel_replica_runs_and_overlaps():
    spec = make_spec(model="llama-2-7b", pp=2, qps=6.0, requests=100)
    s = simulate(spec).summary
    assert s["completed_requests"] == 100
    tp = simulate(make_spec(model="llama-2-7b", tp=2, qps=6.0, requests=100)).summary
    assert tp["completed_requests"] == 100 and tp["tpot_p50_s"] < simulate(make_spec(model="llama-2-7b", qps=6.0,
                                                                                    requests=100)).summary["tpot_p50_s"]


def test_stage_timer_decode_vector_matches_scalar(hand_table):
    timer = StageTimer(hand_table, LAYERS, 1, 1)
    ctx = np.array([10.0, 300.0, 5000.0])
    vec = timer.decode_iterations(7, ctx)
    for c, v in zip(ctx, vec):
        assert v == pytest.approx(timer.batch_time(np.ones(7, dtype=np.int64), np.full(7, c)), rel=1e-12)


@pytest.mark.parametrize("routing", ["round_robin", "random", "least_outstanding"])
def test_fast_forward_equals_stepping_on_a_cluster(routing):
    spec = make_spec(model="llama-2-7b", scheduler="vllm", qps=20.0, requests=150, replicas=3, routing=routing,
                     length="uniform", min_tokens=200, max_tokens=1500, prefill_to_decode_ratio=2.0)
    fast, step = simulate(spec), simulate(spec, exact=True)
    np.testing.assert_array_equal(fast.output.state.replica, step.output.state.replica)
    np.testing.assert_allclose(fast.output.state.completed_at, step.output.state.completed_at, rtol=1e-9)
    assert len(set(fast.output.state.replica.tolist())) == 3


@pytest.mark.parametrize("lookups", [(), ("tokens_x8", "decode_context_x256", "gqa_decode_overhead")])
def test_decode_scalar_and_vector_paths_agree(lookups):
    from perfforge.serving.optable import model_table

    timer = StageTimer(model_table("llama-3-8b", "a100-sxm4-80gb"), 32, 1, 1, vidur_lookups=lookups, gqa=True)
    ctx = np.array([1.0, 255.5, 700.0, 3000.0])
    vec = timer.decode_iterations(13, ctx)
    assert [timer.decode_one(13, c) for c in ctx] == pytest.approx(vec.tolist(), rel=1e-12)
    shrink = timer.shrinking_decode_iterations(np.array([13, 13, 13, 13]), ctx)
    assert shrink.tolist() == pytest.approx(vec.tolist(), rel=1e-9)
