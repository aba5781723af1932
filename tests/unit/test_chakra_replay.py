"""The Chakra replay on hand-made traces, against times worked out by hand."""

from __future__ import annotations

import pytest

from perfforge.adapters.chakra import COMM_COLL_NODE, COMM_RECV_NODE, COMM_SEND_NODE, COMM_TYPES, COMP_NODE, EtNode
from perfforge.adapters.chakra_replay import replay
from perfforge.core.errors import ConfigError

AR = COMM_TYPES["all_reduce"]


def comp(i: int, us: int, deps: list[int] | None = None) -> EtNode:
    return EtNode(i, f"c{i}", COMP_NODE, duration_micros=us, data_deps=deps or [])


def coll(i: int, size: int, deps: list[int], group: str | None = None) -> EtNode:
    attrs = {"comm_type": AR, "comm_size": size} | ({"pg_name": group} if group else {})
    return EtNode(i, f"ar{i}", COMM_COLL_NODE, data_deps=deps, attrs=attrs)


def p2p(i: int, kind: int, src: int, dst: int, deps: list[int]) -> EtNode:
    return EtNode(i, f"p{i}", kind, data_deps=deps, attrs={"comm_src": src, "comm_dst": dst, "comm_tag": 7,
                                                           "comm_size": 1000})


COST = dict(collective_s=lambda kind, size, group: size * 1e-9, p2p_s=lambda size: size * 1e-9)  # 1 ns per byte


def test_a_pipeline_hand_off():
    # rank 0: 10 us of compute, then sends 1000 B (1 us); rank 1: 3 us, waits for them, then 5 us
    r0 = [comp(0, 10), p2p(1, COMM_SEND_NODE, 0, 1, [0])]
    r1 = [comp(0, 3), p2p(1, COMM_RECV_NODE, 0, 1, [0]), comp(2, 5, [1])]
    res = replay([r0, r1], {}, **COST)
    assert res.rank_finish_s == pytest.approx((10e-6, 16e-6))   # 10 + 1 us arrival, + 5 us
    assert res.finish_s == pytest.approx(16e-6) and res.compute_s == pytest.approx((10e-6, 8e-6))
    assert res.exposed_s == pytest.approx(8e-6)


def test_a_collective_waits_for_its_last_member_and_a_group_runs_one_at_a_time():
    # two collectives on group 1, issued back to back off the chain: the second starts when the first ends
    r0 = [comp(0, 4), coll(1, 2000, [0], "1"), coll(2, 3000, [0], "1"), comp(3, 1, [1, 2])]
    r1 = [comp(0, 9), coll(1, 2000, [0], "1"), coll(2, 3000, [0], "1"), comp(3, 1, [1, 2])]
    res = replay([r0, r1], {1: [0, 1]}, **COST)
    # both collectives start at 9 us (rank 1's compute); 2 us, then 3 us more; then 1 us of compute
    assert res.finish_s == pytest.approx(15e-6)
    # without a group name a collective spans every rank
    res = replay([[comp(0, 2), coll(1, 1000, [0])], [comp(0, 5), coll(1, 1000, [0])]], {}, **COST)
    assert res.finish_s == pytest.approx(6e-6)


def test_what_cannot_run_is_an_error():
    lonely = [[p2p(0, COMM_RECV_NODE, 1, 0, [])], [comp(0, 1)]]
    with pytest.raises(ConfigError, match="no matching send"):
        replay(lonely, {}, **COST)
    mismatch = [[coll(0, 1000, [], "1")], [coll(0, 2000, [], "1")]]
    with pytest.raises(ConfigError, match="differs across ranks"):
        replay(mismatch, {1: [0, 1]}, **COST)
    with pytest.raises(ConfigError, match="not defined"):
        replay([[coll(0, 1000, [], "5")]], {1: [0]}, **COST)
    cycle = [[comp(0, 1, [1]), comp(1, 1, [0])]]
    with pytest.raises(ConfigError, match="never started"):
        replay(cycle, {}, **COST)
