"""ASTRA-sim export of tensor x pipeline x data parallel steps, checked without ASTRA-sim.

The exported traces are decoded and replayed by ``perfforge.adapters.chakra_replay`` (a small event-driven
scheduler, tested on hand-made traces in tests/unit/test_chakra_replay.py) with the costs perfforge's hybrid model
uses, so the replay must land on perfforge's own step time, and it must not deadlock: every receive has its send,
every group's members issue the same collectives in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfforge.adapters.astrasim import export
from perfforge.adapters.astrasim_hybrid import comm_groups, involved_dims, rank_of
from perfforge.adapters.chakra import COMM_COLL_NODE, COMM_RECV_NODE, COMM_SEND_NODE, COMM_TYPES, COMP_NODE, read_et
from perfforge.adapters.chakra_replay import replay_export
from perfforge.core.errors import ConfigError
from perfforge.distributed.engine import hybrid_plan
from perfforge.distributed.hybrid import FP32_BYTES
from perfforge.distributed.topology import Dimension, Topology
from perfforge.scenario import make_scenario

KIND_OF = {v: k for k, v in COMM_TYPES.items()}


def _scenario(**kw):
    base = dict(model="gpt3-1.3b", hardware="h100-sxm5-80gb", mode="train", batch=8, seq=1024, dtype="bf16",
                engine="distributed", gpus=8, tp=2, pp=2, microbatches=4)
    base.update(kw)
    return make_scenario(**base)


def _plan(scenario):
    plan, h, _ = hybrid_plan(scenario)
    return plan, h.cal


def _read(folder: Path):
    manifest = json.loads((folder / "manifest.json").read_text())
    traces = [read_et((folder / f"workload.{r}.et").read_bytes())[1] for r in range(manifest["npus"])]
    groups = json.loads((folder / manifest["comm_groups"]).read_text()) if manifest["comm_groups"] else {}
    return manifest, traces, {int(k): v for k, v in groups.items()}


CASES = {
    "1f1b tp2 pp2 dp2": {},
    "gpipe tp2 pp2 dp2": {"schedule": "gpipe"},
    "1f1b pp4": {"tp": 1, "pp": 4, "gpus": 8, "microbatches": 8},
    "interleaved v2 + recompute + zero1": {"schedule": "interleaved", "virtual_stages": 2, "recompute": True,
                                           "zero": 1},
    "tp8 sequence parallel": {"tp": 8, "pp": 1, "gpus": 16, "sequence_parallel": True},
    "zero3 tp2 pp2": {"zero": 3},
    "zero3 pp2 dp4 + recompute": {"tp": 1, "gpus": 8, "zero": 3, "recompute": True},
    "dp8, 4 microbatches, zero2": {"tp": 1, "pp": 1, "zero": 2},
    "tp2 dp4, reductions not overlapped": {"pp": 1, "microbatches": 1, "overlap": False},
}


@pytest.mark.parametrize("case", list(CASES))
def test_replayed_export_reproduces_perfforge_step_time(tmp_path, case):
    scenario = _scenario(**CASES[case])
    manifest = export(scenario, tmp_path)
    out = replay_export(tmp_path)   # raises on a deadlock or on a group whose members disagree
    # Known differences, all small: the replay's sends do not block the sender (perfforge's stage times carry the
    # send on both sides); each layer's gradients are reduced, one after another on the group's stream, as soon as
    # the last microbatch is done with it (perfforge exposes the part of one reduction longer than the last
    # backward); with ZeRO-3 the first layer's gather of each chunk has no earlier layer to hide behind
    # (perfforge hides every gather shorter than a layer). Compute durations are rounded to whole microseconds.
    # Measured: 0.9999-1.037 over nine layouts.
    assert out["ratio"] == pytest.approx(1.0, abs=0.04), out
    assert out["ranks_replayed"] == manifest["npus"] == scenario.gpus


def test_traces_carry_the_plan_bytes_and_groups(tmp_path):
    scenario = _scenario()
    export(scenario, tmp_path)
    manifest, traces, groups = _read(tmp_path)
    plan, _ = _plan(scenario)
    tp, pp, dp, m = 2, 2, 2, 4
    assert groups == comm_groups(tp, dp, pp)[0]
    # tensor-parallel groups hold consecutive ranks, data-parallel groups stride by tp (Megatron-LM's order)
    assert [0, 1] in groups.values() and [0, 2] in groups.values() and [4, 6] in groups.values()
    for rank, nodes in enumerate(traces):
        s = rank // (tp * dp)
        tp_colls = [n for n in nodes if n.type == COMM_COLL_NODE and n.attrs["comm_size"] == int(plan.act_bytes)
                    and rank in groups[int(n.attrs["pg_name"])] and len(groups[int(n.attrs["pg_name"])]) == tp
                    and KIND_OF[n.attrs["comm_type"]] == "all_reduce"]
        # two all-reduces per layer forward and two per layer backward, every microbatch
        assert len(tp_colls) == m * plan.layers_per_stage * 4
        grads = [n for n in nodes if n.type == COMM_COLL_NODE and ".grads." in n.name]
        stage_params = plan.layer_params * plan.layers_per_stage + (plan.emb_params if s == 0 else 0) + \
            (plan.head_params if s == pp - 1 else 0)
        assert sum(n.attrs["comm_size"] for n in grads) == pytest.approx(stage_params * FP32_BYTES, abs=len(grads))
        assert all(rank in groups[int(n.attrs["pg_name"])] for n in grads)
        compute = sum(n.duration_micros for n in nodes if n.type == COMP_NODE and n.name != "optimizer")
        expect = m * plan.layers_per_stage * (sum(plan.block_fwd_s) + sum(plan.block_bwd_s)) + \
            m * ((plan.emb_fwd_s + plan.emb_bwd_s) if s == 0 else (plan.head_fwd_s + plan.head_bwd_s))
        assert compute * 1e-6 == pytest.approx(expect, rel=0.01)
        for n in nodes:
            if n.type in (COMM_SEND_NODE, COMM_RECV_NODE):
                assert n.attrs["comm_size"] == int(plan.act_bytes) // tp
                peer = n.attrs["comm_dst"] if n.type == COMM_SEND_NODE else n.attrs["comm_src"]
                assert abs(peer - rank) == tp * dp   # the same tensor/data position one stage away
    system = json.loads((tmp_path / "system.json").read_text())
    assert system["all-reduce-implementation"] == ["ring"]  # one NVLink switch of 8: one dimension


def test_involved_dims_follow_the_ranks():
    topo = Topology((Dimension("node", "switch", 8, 1e11, 1e-6), Dimension("net", "switch", 4, 1e10, 5e-6)))
    assert involved_dims([0, 1, 2, 3], topo) == [True, False]
    assert involved_dims([0, 8, 16, 24], topo) == [False, True]
    assert involved_dims([0, 9], topo) == [True, True]
    assert rank_of(1, 2, 3, tp=2, dp=4) == 3 * 8 + 2 * 2 + 1


def test_algorithms_are_written_under_astra_sims_names(tmp_path):
    for ours, theirs in (("halving_doubling", "halvingDoubling"), ("double_binary_tree", "doubleBinaryTree"),
                         ("direct", "direct")):
        folder = tmp_path / ours
        export(make_scenario(model="resnet50", hardware="a100-sxm4-80gb", mode="train", gpus=16, batch=32,
                             engine="distributed", collective_algorithm=ours), folder)
        system = json.loads((folder / "system.json").read_text())
        assert set(system["all-reduce-implementation"]) == {theirs}


def test_what_the_export_refuses(tmp_path):
    with pytest.raises(ConfigError, match="need a decoder transformer"):
        export(make_scenario(model="resnet50", hardware="a100-sxm4-80gb", mode="train", gpus=8, batch=32,
                             engine="distributed", pp=2, microbatches=2), tmp_path / "b")


def test_cli_exports_a_pipeline_layout(tmp_path):
    from perfforge.cli.main import main

    main(["astra-sim", "export", "--out", str(tmp_path), "--model", "gpt3-1.3b", "--hardware", "h100-sxm5-80gb",
          "--gpus", "8", "--tp", "2", "--pp", "2", "--microbatches", "4", "--batch", "8", "--seq", "1024",
          "--dtype", "bf16", "--schedule", "interleaved", "--virtual-stages", "2", "--sequence-parallel"])
    manifest, traces, groups = _read(tmp_path)
    assert manifest["parallel"] == {"tp": 2, "pp": 2, "dp": 2, "zero": 0, "microbatches": 4,
                                    "schedule": "interleaved", "virtual_stages": 2, "sequence_parallel": True,
                                    "recompute": False}
    assert len(traces) == 8 and len(groups) == 8   # four tensor-parallel pairs and four data-parallel pairs


def test_run_passes_the_communicator_groups(tmp_path, monkeypatch):
    import stat

    from perfforge.adapters.astrasim import run

    fake = tmp_path / "fake-astra-sim"   # prints its arguments and one report line per rank
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
                    'echo "[workload] [info] sys[0] finished, 2000 cycles, exposed communication 500 cycles."\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    export(_scenario(), tmp_path / "hybrid")
    monkeypatch.setenv("ASTRA_SIM_BIN", str(fake))
    assert run(tmp_path / "hybrid")["finish_ns"] == 2000
    assert f"--comm-group-configuration={tmp_path / 'hybrid' / 'comm_groups.json'}" in (tmp_path / "args").read_text()
