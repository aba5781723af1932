"""Collective costs against hand-computed alpha-beta formulas, and their invariants."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfforge.core.errors import ConfigError
from perfforge.distributed.collectives import ALGORITHMS, bytes_sent_per_npu, collective_time
from perfforge.distributed.topology import Dimension, Topology, cluster_topology

GB = 1e9
MIB = 2**20


def ring8(bw=50 * GB, lat=1e-6):
    return Dimension("d", "ring", 8, bw, lat)


def test_ring_all_reduce_by_hand():
    d = ring8()
    # 2(n-1) = 14 steps of S/n = 128 KiB at 50 GB/s plus 1 us each
    expected = 14 * (1e-6 + (MIB / 8) / (50 * GB))
    assert ALGORITHMS.get("ring")("all_reduce", MIB, d, 1.0) == pytest.approx(expected)
    # all-gather and reduce-scatter are half of it: n-1 steps
    assert ALGORITHMS.get("ring")("all_gather", MIB, d, 1.0) == pytest.approx(expected / 2)


def test_direct_over_switch_and_fully_connected():
    sw = Dimension("s", "switch", 8, 100 * GB, 2e-6)
    fc = Dimension("f", "fully_connected", 8, 100 * GB, 2e-6)
    # switch: every byte leaves one port: (n-1)/n * S per phase; fully connected: one piece per phase
    assert ALGORITHMS.get("direct")("all_reduce", 8 * MIB, sw, 1.0) == pytest.approx(2 * (2e-6 + 7 / 8 * 8 * MIB / (100 * GB)))
    assert ALGORITHMS.get("direct")("all_reduce", 8 * MIB, fc, 1.0) == pytest.approx(2 * (2e-6 + MIB / (100 * GB)))


def test_halving_doubling_and_tree():
    d = ring8()
    hd = ALGORITHMS.get("halving_doubling")("all_reduce", MIB, d, 1.0)
    assert hd == pytest.approx(2 * (3 * 1e-6 + 7 / 8 * MIB / (50 * GB)))  # log2(8) = 3 steps per phase
    tree = ALGORITHMS.get("double_binary_tree")("all_reduce", MIB, d, 1.0)
    assert tree == pytest.approx(2 * 3 * 1e-6 + MIB / (50 * GB))
    with pytest.raises(ConfigError, match="power-of-two"):
        ALGORITHMS.get("halving_doubling")("all_reduce", MIB, Dimension("d", "ring", 6, GB, 0), 1.0)


def test_hierarchical_all_reduce_is_rs_ar_ag():
    inner = Dimension("node", "switch", 8, 300 * GB, 1e-6)
    outer = Dimension("net", "switch", 4, 25 * GB, 5e-6)
    topo = Topology((inner, outer))
    s = 100 * MIB
    ring = ALGORITHMS.get("ring")
    expected = (ring("reduce_scatter", s, inner, 1.0) + ring("all_gather", s, inner, 1.0)
                + ring("all_reduce", s / 8, outer, 1.0))
    assert collective_time("all_reduce", s, topo) == pytest.approx(expected)


def test_size_one_groups_move_nothing():
    topo = Topology((Dimension("node", "switch", 1, GB, 1e-6),))
    assert collective_time("all_reduce", 10 * MIB, topo) == 0.0
    assert bytes_sent_per_npu("all_reduce", 10 * MIB, 1) == 0.0
    assert bytes_sent_per_npu("all_reduce", 8.0, 4) == pytest.approx(2 * 3 / 4 * 8)


@settings(max_examples=60, deadline=None)
@given(size=st.floats(1, 1e10), n=st.sampled_from([2, 4, 8, 16]), bw=st.floats(1e9, 1e12),
       scale=st.floats(1.0, 10.0), algo=st.sampled_from(["ring", "direct", "halving_doubling", "double_binary_tree"]),
       coll=st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "all_to_all"]))
def test_more_bandwidth_is_never_slower(size, n, bw, scale, algo, coll):
    slow = Topology((Dimension("d", "switch", n, bw, 1e-6),))
    fast = Topology((Dimension("d", "switch", n, bw * scale, 1e-6),))
    alg = {"d": algo}
    assert collective_time(coll, size, fast, algorithms=alg) <= collective_time(coll, size, slow, algorithms=alg)
    assert collective_time(coll, 2 * size, slow, algorithms=alg) >= collective_time(coll, size, slow, algorithms=alg)


def test_cluster_topology_from_catalog():
    one = cluster_topology("dgx-a100", 8)
    assert [(d.name, d.npus) for d in one.dims] == [("node", 8)]
    assert one.dims[0].bytes_per_s == pytest.approx(300e9)  # 600 GB/s NVLink, one direction
    multi = cluster_topology("dgx-h100", 64)
    assert [(d.name, d.npus) for d in multi.dims] == [("node", 8), ("network", 8)]
    assert multi.dims[1].bytes_per_s == pytest.approx(400e9 / 8)  # one NDR port per GPU: 400 Gb/s
    with pytest.raises(ConfigError, match="whole dgx-a100 nodes"):
        cluster_topology("dgx-a100", 12)


def test_bad_inputs():
    topo = Topology((ring8(),))
    with pytest.raises(ConfigError, match="unknown collective"):
        collective_time("broadcastt", MIB, topo)
    with pytest.raises(ConfigError, match=">= 0 bytes"):
        collective_time("all_reduce", -1, topo)
    with pytest.raises(Exception, match="unknown collective algorithm 'rign'"):
        collective_time("all_reduce", MIB, topo, algorithms={"d": "rign"})
    with pytest.raises(ConfigError):
        Dimension("d", "ring", 0, GB, 0)
