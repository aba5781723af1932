"""The compiled core gives the Python reference simulator's results: same requests, same state, same log."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfforge.core.errors import ConfigError, InfeasibleError
from perfforge.serving.run import simulate
from perfforge.serving.spec import make_spec

pytest.importorskip("numba")

_STATE = ("first_token_at", "completed_at", "scheduled_at", "last_token_at", "restarts", "processed", "prefill",
          "reserved", "replica")
_LOG = ("replica", "start", "end", "iterations", "size", "prefill_tokens", "decode_tokens", "kv_tokens",
        "blocks_used")


def _distribution(values, weights):
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, np.bincount(inverse, weights=weights)


def _assert_same(py, cc):
    a, b = py.output, cc.output
    for name in _STATE:
        np.testing.assert_allclose(getattr(b.state, name), getattr(a.state, name), rtol=1e-12, atol=0,
                                   err_msg=name)
    for name in _LOG:
        np.testing.assert_allclose(np.asarray(getattr(b.log, name), float), np.asarray(getattr(a.log, name), float),
                                   rtol=1e-12, atol=0, err_msg=name)
    # token gaps: the same distribution, i.e. the same total weight (tokens) at each distinct gap (each core
    # groups equal gaps its own way)
    va, wa = _distribution(a.tbt_values, a.tbt_weights)
    vb, wb = _distribution(b.tbt_values, b.tbt_weights)
    np.testing.assert_allclose(vb, va, rtol=1e-12)
    np.testing.assert_array_equal(wb, wa)
    assert (b.preemptions, b.events, b.num_blocks) == (a.preemptions, a.events, a.num_blocks)
    for key, value in py.summary.items():
        if key != "simulation_core":
            assert cc.summary[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key


SCENARIOS = {
    # load: (qps, memory_fraction) -- "pressure" shrinks the KV cache until requests are preempted
    "low": (1.0, 0.9), "near": (8.0, 0.9), "over": (40.0, 0.9), "pressure": (40.0, 0.25),
}


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "orca", "static"])
@pytest.mark.parametrize("load", list(SCENARIOS))
@pytest.mark.parametrize("exact", [False, True], ids=["fast-forward", "stepping"])
def test_compiled_equals_python(scheduler, load, exact):
    qps, mem = SCENARIOS[load]
    spec = dict(model="llama-2-7b", scheduler=scheduler, qps=qps, requests=150, length="uniform", min_tokens=200,
                max_tokens=2048, prefill_to_decode_ratio=2.0, memory_fraction=mem, seed=7)
    py = simulate(make_spec(**spec, core="python"), exact=exact)
    cc = simulate(make_spec(**spec, core="compiled"), exact=exact)
    assert (py.summary["simulation_core"], cc.summary["simulation_core"]) == ("python", "compiled")
    _assert_same(py, cc)
    if load == "pressure" and scheduler in ("vllm", "sarathi"):
        assert cc.summary["preemptions"] > 0   # the scenario exercises preemption by recompute


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_compiled_equals_python_with_vidur_lookups_on_a_gqa_model(scheduler):
    spec = dict(model="llama-3-8b", scheduler=scheduler, qps=6.0, requests=120, length="zipf", min_tokens=64,
                max_tokens=3000, seed=3)
    py = simulate(make_spec(**spec, core="python"), vidur_lookups=True)
    cc = simulate(make_spec(**spec, core="compiled"), vidur_lookups=True)
    _assert_same(py, cc)


@pytest.mark.parametrize("routing", ["round_robin", "random", "least_outstanding"])
@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
@pytest.mark.parametrize("exact", [False, True], ids=["fast-forward", "stepping"])
def test_compiled_cluster_equals_python_joint_simulation(routing, scheduler, exact):
    spec = dict(model="llama-2-7b", scheduler=scheduler, qps=20.0, requests=200, replicas=3, routing=routing,
                length="uniform", min_tokens=200, max_tokens=1500, prefill_to_decode_ratio=2.0)
    py = simulate(make_spec(**spec, core="python"), exact=exact)
    cc = simulate(make_spec(**spec, core="compiled"), exact=exact)
    _assert_same(py, cc)


def test_least_outstanding_cluster_with_simultaneous_arrivals_and_preemption():
    """Ties everywhere: all requests at once on identical replicas, whose batches end at the same instants;
    memory pressure makes them preempt."""
    spec = dict(model="llama-2-7b", scheduler="vllm", arrival="static", requests=120, replicas=4,
                routing="least_outstanding", length="uniform", min_tokens=300, max_tokens=2048,
                prefill_to_decode_ratio=1.0, memory_fraction=0.2)
    py = simulate(make_spec(**spec, core="python"))
    cc = simulate(make_spec(**spec, core="compiled"))
    _assert_same(py, cc)
    assert cc.summary["preemptions"] > 0


def test_a_compiled_core_in_this_process_needs_no_compiling():
    from perfforge.serving import compiled

    simulate(make_spec(model="llama-2-7b", qps=6.0, requests=5))
    assert compiled.needs_compiling() is False


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "orca", "static"])
@pytest.mark.parametrize("pp", [2, 4])
def test_compiled_pipeline_parallel_replicas_equal_python(scheduler, pp):
    """Micro-batches in flight on every stage, each stage's queue, the last stage finishing them."""
    spec = dict(model="llama-2-7b", scheduler=scheduler, qps=8.0, requests=100, pp=pp, tp=2, replicas=2,
                routing="least_outstanding", length="uniform", min_tokens=200, max_tokens=2048,
                prefill_to_decode_ratio=2.0, memory_fraction=0.3)
    _assert_same(simulate(make_spec(**spec, core="python")), simulate(make_spec(**spec, core="compiled")))


def test_auto_core_is_compiled_for_every_layout_and_routing():
    base = dict(model="llama-2-7b", qps=6.0, requests=40)
    assert simulate(make_spec(**base)).summary["simulation_core"] == "compiled"
    assert simulate(make_spec(**base, pp=2)).summary["simulation_core"] == "compiled"
    assert simulate(make_spec(**base, replicas=2, routing="least_outstanding")).summary["simulation_core"] == "compiled"
    assert simulate(make_spec(**base, core="python")).summary["simulation_core"] == "python"


def test_an_unknown_core_is_refused_with_the_allowed_values():
    with pytest.raises(ConfigError, match="core"):
        make_spec(core="fortran")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries(dict(
    model=st.sampled_from(["llama-2-7b", "llama-3-8b"]), scheduler=st.sampled_from(["vllm", "sarathi", "orca", "static"]),
    qps=st.sampled_from([0.5, 3.0, 10.0, 50.0, 200.0]), requests=st.sampled_from([1, 2, 17, 60]),
    arrival=st.sampled_from(["poisson", "gamma", "static"]), length=st.sampled_from(["fixed", "uniform", "zipf"]),
    prefill=st.sampled_from([1, 16, 300]), decode=st.sampled_from([1, 2, 50]), min_tokens=st.sampled_from([16, 200]),
    max_tokens=st.sampled_from([512, 2048]), block_size=st.sampled_from([1, 16, 32]),
    max_batch_size=st.sampled_from([1, 3, 128, 600]), chunk_size=st.sampled_from([1, 64, 512]),
    memory_fraction=st.sampled_from([0.2, 0.5, 0.9]), replicas=st.sampled_from([1, 2, 3]),
    routing=st.sampled_from(["round_robin", "random", "least_outstanding"]), seed=st.integers(0, 99),
    pp=st.sampled_from([1, 2, 4]), tp=st.sampled_from([1, 2]))),
    st.booleans(), st.booleans())
def test_compiled_equals_python_on_random_scenarios(kw, exact, vidur_lookups):
    """Odd corners too: one-token blocks, chunks and prompts, a batch cap of 1, all requests at once."""
    try:
        py = simulate(make_spec(**kw, core="python"), exact=exact, vidur_lookups=vidur_lookups)
    except (ConfigError, InfeasibleError):
        return   # an impossible scenario (a request longer than the KV cache, no room for weights)
    _assert_same(py, simulate(make_spec(**kw, core="compiled"), exact=exact, vidur_lookups=vidur_lookups))


def test_without_numba_serving_runs_in_python_and_compiled_says_why():
    import subprocess
    import sys

    code = ("import sys; sys.modules['numba'] = None\n"   # numba absent: its import raises ImportError
            "from perfforge.core.errors import ConfigError\n"
            "from perfforge.serving.run import simulate\nfrom perfforge.serving.spec import make_spec\n"
            "print(simulate(make_spec(model='llama-2-7b', requests=20)).summary['simulation_core'])\n"
            "try:\n    simulate(make_spec(model='llama-2-7b', requests=20, core='compiled'))\n"
            "except ConfigError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "python" and "numba is not installed" in out
