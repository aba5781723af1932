"""Replicas simulated apart, in worker processes, give the joint simulation's results exactly."""

from __future__ import annotations

import numpy as np
import pytest

from perfforge.core.errors import ConfigError
from perfforge.serving.parallel import can_split, simulate_split
from perfforge.serving.run import simulate
from perfforge.serving.spec import make_spec

STATE = ("first_token_at", "completed_at", "scheduled_at", "last_token_at", "restarts", "replica", "processed")


def _same(joint, split) -> None:  # noqa: ANN001
    for name in STATE:
        np.testing.assert_array_equal(getattr(joint.output.state, name), getattr(split.output.state, name))
    for key, value in joint.summary.items():
        if key == "replica_jobs":
            continue
        if isinstance(value, float):
            assert split.summary[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
        else:
            assert split.summary[key] == value, key
    assert sorted(joint.output.log.end) == split.output.log.end   # one log, in time order
    assert sorted(joint.output.tbt_values.tolist()) == sorted(split.output.tbt_values.tolist())


@pytest.mark.parametrize("routing", ["round_robin", "random"])
@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "orca", "static"])
def test_split_equals_joint(routing: str, scheduler: str) -> None:
    base = dict(model="llama-2-7b", scheduler=scheduler, replicas=3, routing=routing, qps=20.0, requests=240,
                length="uniform", min_tokens=200, max_tokens=2048, prefill_to_decode_ratio=2.0)
    joint = simulate(make_spec(**base))
    split = simulate(make_spec(**base, replica_jobs=2))
    assert joint.summary["replica_jobs"] == 1 and split.summary["replica_jobs"] == 2
    _same(joint, split)


def test_split_equals_joint_under_memory_pressure() -> None:
    base = dict(model="llama-2-7b", scheduler="vllm", replicas=2, qps=200.0, requests=160, memory_fraction=0.25,
                length="uniform", min_tokens=400, max_tokens=4096, prefill_to_decode_ratio=1.0)
    joint = simulate(make_spec(**base))
    assert joint.summary["preemptions"] > 0
    _same(joint, simulate(make_spec(**base, replica_jobs=3)))


def test_a_replica_without_requests_and_more_jobs_than_replicas() -> None:
    base = dict(model="llama-2-7b", replicas=6, routing="random", qps=5.0, requests=3, seed=3)
    joint = simulate(make_spec(**base))
    assert len(set(joint.output.state.replica.tolist())) < 6       # some replica got nothing
    _same(joint, simulate(make_spec(**base, replica_jobs=8)))


def test_state_dependent_routing_runs_jointly() -> None:
    assert not can_split("least_outstanding", 4) and not can_split("round_robin", 1)
    r = simulate(make_spec(model="llama-2-7b", replicas=2, routing="least_outstanding", requests=40,
                           replica_jobs=2))
    assert r.summary["replica_jobs"] == 1
    with pytest.raises(ValueError, match="cannot run apart"):
        simulate_split(None, None, None, replicas=2, routing="least_outstanding", seed=0,  # type: ignore[arg-type]
                       fast_forward=True, jobs=2)


def test_bad_replica_jobs() -> None:
    with pytest.raises(ConfigError, match="replica_jobs"):
        make_spec(model="llama-2-7b", replica_jobs=0)
