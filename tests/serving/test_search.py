import pytest

from perfforge.core.errors import ConfigError
from perfforge.serving.search import SLO, capacity, search_configs
from perfforge.serving.spec import make_spec

SPEC = make_spec(model="llama-2-7b", requests=80, prefill=256, decode=32)


def test_looser_slo_never_lowers_capacity():
    tight = capacity(SPEC, SLO(ttft_s=0.2))
    loose = capacity(SPEC, SLO(ttft_s=2.0))
    assert 0 < tight.qps <= loose.qps * 1.02
    assert tight.upper_qps > tight.qps


def test_search_ranks_by_cost_and_reports_infeasible():
    # a TTFT SLO that 80 requests arriving at once break on every configuration, so every capacity is bounded
    rows = search_configs(SPEC, {"hardware": ["a100-sxm4-80gb", "h100-sxm5-80gb"], "tp": [1, 2]}, SLO(ttft_s=0.2))
    assert len(rows) == 4
    costs = [r["usd_per_million_tokens"] for r in rows if "usd_per_million_tokens" in r]
    assert costs == sorted(costs) and len(costs) == 4
    # a replica that cannot hold the weights is reported, not dropped
    rows = search_configs(make_spec(model="llama-2-70b", requests=40, prefill=256, decode=32), {"tp": [1]}, SLO())
    assert rows[0]["feasible"] is False and "leave no room" in rows[0]["reason"]


def test_capacity_that_no_rate_bounds_is_refused():
    # two H100s serve all 80 requests within a 1 s TTFT even when they arrive together: no rate breaks the SLO
    with pytest.raises(ConfigError, match="capacity is unbounded at 80 requests"):
        capacity(SPEC.model_copy(update={"hardware": "h100-sxm5-80gb", "tp": 2}), SLO(ttft_s=1.0))
    rows = search_configs(SPEC, {"hardware": ["h100-sxm5-80gb"], "tp": [2]}, SLO(ttft_s=1.0))
    assert rows[0]["feasible"] is False and "unbounded" in rows[0]["reason"]


@pytest.mark.parametrize("ttft", [0.0, -1.0, float("inf")])
def test_slo_must_be_positive_seconds(ttft):
    with pytest.raises(ConfigError, match="SLO ttft must be a positive number of seconds"):
        SLO(ttft_s=ttft)


def test_search_rejects_unknown_axes():
    with pytest.raises(ConfigError, match="cannot search over qps"):
        search_configs(SPEC, {"qps": [1, 2]})


def test_search_on_ray_gives_the_same_rows():
    pytest.importorskip("ray")
    axes = {"tp": [1, 2]}
    local = search_configs(SPEC, axes, SLO(ttft_s=1.0))
    ray_rows = search_configs(SPEC, axes, SLO(ttft_s=1.0), executor="ray", jobs=2)
    assert [(r["tp"], r["capacity_qps"]) for r in local] == [(r["tp"], r["capacity_qps"]) for r in ray_rows]
