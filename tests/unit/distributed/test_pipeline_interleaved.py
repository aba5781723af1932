"""Interleaved 1F1B simulated stage by stage: the paper's closed form on equal chunks, Megatron-LM's order, and
its dependencies."""

import json

import pytest

import perfforge
from perfforge.core.errors import ConfigError
from perfforge.distributed.pipeline import interleaved_order, simulate_interleaved, simulate_pipeline


@pytest.mark.parametrize("p,m,v", [(4, 8, 2), (8, 64, 3), (4, 4, 2), (2, 8, 4), (35, 280, 3)])
def test_equal_chunks_give_the_papers_bubble(p, m, v):
    # Narayanan et al. 2021, section 2.2.2: (m + (p - 1) / v) x (t_f + t_b), t_f and t_b a whole stage's times
    a = 1e-3
    run = simulate_interleaved([[a] * v for _ in range(p)], [[2 * a] * v for _ in range(p)], m)
    assert run.makespan_s == pytest.approx((m + (p - 1) / v) * 3 * a * v)
    assert run.bubble_s == pytest.approx((p - 1) / v * 3 * a * v)


def test_one_chunk_is_1f1b():
    t_f, t_b = [1.0, 1.2, 0.9, 1.5], [2.0, 2.1, 1.8, 3.0]   # unequal stages too
    one = simulate_interleaved([[f] for f in t_f], [[b] for b in t_b], 8)
    assert one.makespan_s == pytest.approx(simulate_pipeline(t_f, t_b, 8, "1f1b").makespan_s)


def test_megatron_order_and_dependencies():
    p, m, v = 4, 8, 2
    orders = [interleaved_order(s, p, m, v) for s in range(p)]
    for order in orders:   # every (pass, chunk, microbatch) once
        assert sorted(order) == sorted((k, c, i) for k in "FB" for c in range(v) for i in range(m))
    # stage 0 warms up with (p - 1) x 2 + (v - 1) x p forwards: microbatches 0-3 of chunk 0, then of chunk 1, ...
    assert orders[0][:10] == [("F", 0, i) for i in range(4)] + [("F", 1, i) for i in range(4)] + \
        [("F", 0, 4), ("F", 0, 5)]
    assert orders[0][10] == ("F", 0, 6) and orders[0][11] == ("B", 1, 0)   # then one forward, one backward
    run = simulate_interleaved([[1.0] * v for _ in range(p)], [[2.0] * v for _ in range(p)], m)
    at = {(r.layer, r.name): (r.start_s, r.start_s + r.time_s) for r in run.records}
    for i in range(m):
        # chunk 1 on stage 0 waits for chunk 0 to leave the last stage; the backward comes back the same way
        assert at["stage0", f"F{i}.chunk1"][0] >= at["stage3", f"F{i}.chunk0"][1]
        assert at["stage3", f"B{i}.chunk0"][0] >= at["stage0", f"B{i}.chunk1"][1]
        assert at["stage3", f"B{i}.chunk1"][0] >= at["stage3", f"F{i}.chunk1"][1]


def test_bad_interleaved_inputs_name_the_problem():
    with pytest.raises(ConfigError, match=r"microbatches \(6\) must be a multiple of pp \(4\)"):
        interleaved_order(0, 4, 6, 2)
    with pytest.raises(ConfigError, match="same number of chunks"):
        simulate_interleaved([[1.0, 1.0], [1.0]], [[1.0, 1.0], [1.0]], 4)


def test_interleaved_training_has_a_timeline(tmp_path):
    from perfforge.cli.main import main

    r = perfforge.train("gpt3-1.3b", "h100-sxm5-80gb", gpus=4, pp=4, batch=8, microbatches=8,
                        schedule="interleaved", virtual_stages=2, optimizer="adamw")
    assert {rec.stream for rec in r.breakdown} == {f"stage{s}" for s in range(4)}
    assert len(r.breakdown) == 4 * 2 * 2 * 8   # stages x chunks x (F, B) x microbatches
    trace = tmp_path / "t.json"
    assert main(["train", "--model", "gpt3-1.3b", "--hardware", "h100-sxm5-80gb", "--gpus", "4", "--pp", "4",
                 "--batch", "8", "--microbatches", "8", "--schedule", "interleaved", "--virtual-stages", "2",
                 "--trace", str(trace)]) == 0
    names = {e["name"] for e in json.loads(trace.read_text())["traceEvents"] if e.get("ph") == "X"}
    assert {"F0.chunk0", "F0.chunk1", "B7.chunk1"} <= names


def test_pipeline_sends_are_scattered_over_the_tensor_parallel_ranks():
    """Narayanan et al. 2021, section 4.1: each tp rank sends 1/tp of a microbatch's activations over its own link,
    and the next stage all-gathers them over NVLink (not needed with sequence parallelism: already split)."""
    from perfforge.core.dtypes import DType
    from perfforge.distributed.collectives import collective_time
    from perfforge.distributed.hybrid import ParallelConfig, _groups, simulate_hybrid
    from perfforge.distributed.topology import network_link
    from perfforge.engines.analytical.calibration import load_calibration
    from perfforge.system.catalog import get_device, get_node
    from perfforge.workload.zoo import MODELS

    cfg, node, cal = MODELS.get("gpt3-1.3b").config, get_node("dgx-a100"), load_calibration("ampere")
    net_bw, net_lat = network_link(node)
    m, seq = 8, 1024
    kw = dict(device=get_device("a100-sxm4-80gb"), node=node, net_bw=net_bw, net_lat=net_lat, cal=cal, batch=m,
              seq=seq, dtype=DType.BF16)
    steps = {sp: simulate_hybrid(cfg, par=ParallelConfig(tp=8, pp=4, microbatches=m, sequence_parallel=sp), **kw)
             for sp in (False, True)}
    act = seq * cfg.hidden * 2   # one sequence per microbatch, bf16
    tp_topo, _, pp_link = _groups(node, net_bw, net_lat, ParallelConfig(tp=8, pp=4))
    nccl = {"efficiency": cal.collective_efficiency, "launch_s": cal.collective_launch_s}
    send = pp_link.latency_s + act / 8 / (pp_link.bytes_per_s * cal.collective_efficiency)
    assert steps[True].pp_comm_s == pytest.approx(2 * m * send)
    gather = collective_time("all_gather", act, tp_topo, **nccl)
    assert steps[False].pp_comm_s == pytest.approx(2 * m * (send + gather))
