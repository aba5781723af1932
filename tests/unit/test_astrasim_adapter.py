"""ASTRA-sim adapter: exported Chakra traces decode back correctly; the run path uses a stand-in binary."""

import io
import json
import os
import stat

import pytest

from perfforge.adapters.astrasim import AstraSimEngine, export, run
from perfforge.adapters.chakra import COMM_COLL_NODE, COMM_TYPES, COMP_NODE, EtNode, read_et, write_et
from perfforge.core.errors import ConfigError
from perfforge.scenario import make_scenario
from perfforge.workload.zoo import get_model


def test_chakra_attribute_types_follow_the_feeders():
    from perfforge.adapters.chakra import _attr

    # int32_val (field 7) for the point-to-point attributes, int64_val (9) for sizes, string_val (29) for groups
    assert _attr("comm_src", 3).endswith(bytes([7 << 3, 3]))
    assert _attr("comm_size", 3).endswith(bytes([9 << 3, 3]))
    assert _attr("pg_name", "2").endswith(b"\xea\x01" + b"\x01" + b"2")  # key (29 << 3 | 2) as a varint, length 1
    assert _attr("is_cpu_op", False).endswith(b"\xd8\x01" + b"\x00")  # key 27 << 3 as a varint, false
    nodes = [EtNode(0, "send", 5, attrs={"comm_src": 1, "comm_dst": 9, "comm_tag": 70000, "pg_name": "4"})]
    buf = io.BytesIO()
    write_et(buf, nodes)
    assert read_et(buf.getvalue())[1][0].attrs == {"comm_src": 1, "comm_dst": 9, "comm_tag": 70000, "pg_name": "4"}


def test_chakra_cache_writes_the_same_bytes():
    nodes = [EtNode(i, f"n{i % 3}", COMP_NODE, duration_micros=i % 2 + 1, data_deps=[i - 1] if i else [],
                    attrs={"is_cpu_op": False, "involved_dim": [True, i % 2 == 0], "comm_size": i % 2})
             for i in range(12)]
    plain, cached, cache = io.BytesIO(), io.BytesIO(), {}
    write_et(plain, nodes)
    write_et(cached, nodes, cache)
    write_et(cached := io.BytesIO(), nodes, cache)   # the second trace comes from the cache
    assert cached.getvalue() == plain.getvalue() and len(cache) == 12


def test_chakra_round_trip():
    nodes = [EtNode(0, "fwd", COMP_NODE, duration_micros=12, attrs={"is_cpu_op": False}),
             EtNode(1, "ar", COMM_COLL_NODE, data_deps=[0], attrs={"comm_type": 0, "comm_size": 2**40,
                                                                    "involved_dim": [True, False]}),
             EtNode(2, "opt", COMP_NODE, duration_micros=3, ctrl_deps=[0], data_deps=[1])]
    buf = io.BytesIO()
    write_et(buf, nodes)
    version, back = read_et(buf.getvalue())
    assert version == "0.0.4"
    assert [(n.id, n.name, n.type, n.duration_micros, n.ctrl_deps, n.data_deps) for n in back] == \
        [(n.id, n.name, n.type, n.duration_micros, n.ctrl_deps, n.data_deps) for n in nodes]
    assert back[1].attrs == {"comm_type": 0, "comm_size": 2**40, "involved_dim": [True, False]}


def _scenario(**kw):
    base = dict(model="resnet50", hardware="a100-sxm4-80gb", mode="train", gpus=16, batch=32, optimizer="sgd_momentum",
                engine="distributed")
    base.update(kw)
    return make_scenario(**base)


def test_export_decodes_to_the_scenario(tmp_path):
    manifest = export(_scenario(), tmp_path)
    assert manifest["npus"] == 16 and len(list(tmp_path.glob("workload.*.et"))) == 16
    _, nodes = read_et((tmp_path / "workload.0.et").read_bytes())
    comp = [n for n in nodes if n.type == COMP_NODE]
    comm = [n for n in nodes if n.type == COMM_COLL_NODE]
    # every gradient byte is all-reduced once, in fp32: 25,557,032 parameters x 4 bytes
    assert sum(n.attrs["comm_size"] for n in comm) == 25_557_032 * 4
    assert all(n.attrs["comm_type"] == COMM_TYPES["all_reduce"] and n.data_deps for n in comm)
    # compute nodes form one chain; the optimizer waits for every collective. Every dependency is a data
    # dependency: Chakra's own feeder resolves no other kind (docstring of perfforge.adapters.chakra)
    assert all(n.data_deps == [nodes[i - 1].id] for i, n in enumerate(comp[1:], start=1) if n.name != comp[-1].name)
    assert set(comp[-1].data_deps) == {n.id for n in comm} | {comp[-2].id}
    assert not any(n.ctrl_deps for n in nodes)
    w = get_model("resnet50", batch=32)
    assert len(comp) == len(w.ops) + len(w.backward) + 1 + 2  # forward, backward, optimizer, loss fwd+bwd
    assert "Switch" in (tmp_path / "network.yml").read_text()
    assert json.loads((tmp_path / "system.json").read_text())["active-chunks-per-dimension"] == 1


def test_run_without_binary_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("ASTRA_SIM_BIN", raising=False)
    export(_scenario(), tmp_path)
    with pytest.raises(ConfigError, match="no ASTRA-sim binary configured"):
        run(tmp_path)
    ok, reason = AstraSimEngine().supports(None, None, _scenario())
    assert not ok and "ASTRA_SIM_BIN" in reason


def test_run_parses_a_binary_report(tmp_path, monkeypatch):
    # a stand-in for the ASTRA-sim binary that prints its report lines: tests the invocation and parsing only
    fake = tmp_path / "fake-astra-sim"
    fake.write_text("#!/bin/sh\necho \"[workload] [info] sys[0] finished, 1500 cycles, exposed communication 300 cycles.\"\n"
                    "echo \"[workload] [info] sys[1] finished, 1600 cycles, exposed communication 350 cycles.\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    folder = tmp_path / "inputs"
    export(_scenario(), folder)
    monkeypatch.setenv("ASTRA_SIM_BIN", str(fake))
    out = run(folder)
    assert out["finish_ns"] == 1600 and out["exposed_comm_ns"] == 350
    assert f"--workload-configuration={folder / 'workload'}" in out["command"]
    assert os.path.exists(folder / "memory.json")


def test_export_rejects_what_it_cannot_express(tmp_path):
    # tensor/pipeline parallelism exports too (tests/unit/test_astrasim_hybrid_export.py); inference does not
    with pytest.raises(ConfigError, match="training scenarios"):
        export(_scenario(mode="inference", engine="analytical"), tmp_path)
    with pytest.raises(ConfigError, match="loader_workers: .*cannot be expressed"):
        export(_scenario(loader_workers=4), tmp_path / "loader")
    assert not (tmp_path / "loader").exists()   # nothing half-written


def _compute_micros(folder):
    _, nodes = read_et((folder / "workload.0.et").read_bytes())
    return [n.duration_micros for n in nodes if n.type == COMP_NODE]


def test_export_prices_the_scenarios_own_workload(tmp_path):
    """Fused BN+ReLU kernels, dropout and AMP are part of the scenario: the exported traces carry the same step as
    perfforge's distributed engine, not a plain model of the same name."""
    from perfforge.api import run_scenario

    sc = _scenario(gpus=8, batch=64, dtype="fp16", amp=True, fuse_bn_act=True)
    export(sc, tmp_path / "fused")
    export(_scenario(gpus=8, batch=64, dtype="fp16", amp=True), tmp_path / "plain")
    fused, plain = _compute_micros(tmp_path / "fused"), _compute_micros(tmp_path / "plain")
    assert len(fused) < len(plain)                       # fewer kernels once BN and ReLU are one
    one = run_scenario(sc.model_copy(update={"gpus": 1, "engine": "analytical"}))
    compute_s = sum(r.time_s for r in one.breakdown if r.stream == "compute")
    assert sum(fused) * 1e-6 == pytest.approx(compute_s, rel=0.01)


def test_export_all_reduces_gradients_at_the_engines_width(tmp_path):
    # fp64 training reduces fp64 gradients (8 bytes), as perfforge's data-parallel step does
    export(_scenario(gpus=2, dtype="fp64"), tmp_path)
    _, nodes = read_et((tmp_path / "workload.0.et").read_bytes())
    assert sum(n.attrs["comm_size"] for n in nodes if n.type == COMM_COLL_NODE) == 25_557_032 * 8


def test_export_uses_the_engines_job_topology(tmp_path):
    # one L4 trains alone (no server preset); a node of other GPUs is refused as the engine refuses it
    manifest = export(_scenario(hardware="l4", gpus=1), tmp_path / "l4")
    assert manifest["npus"] == 1
    with pytest.raises(ConfigError, match="holds .* GPUs, not l4"):
        export(_scenario(hardware="l4", gpus=8, node="dgx-a100"), tmp_path / "bad")


def test_export_zero_reduce_scatters_updates_a_shard_and_gathers_parameters(tmp_path):
    """ZeRO-1/2, as perfforge's own data-parallel step runs it: the same buckets reduce-scattered instead of
    all-reduced, the optimizer on 1/n of the parameters, then one all-gather of the updated parameters."""
    from perfforge.api import run_scenario

    sc = _scenario(gpus=16, zero=2, optimizer="adamw")
    export(sc, tmp_path)
    _, nodes = read_et((tmp_path / "workload.0.et").read_bytes())
    comm = [n for n in nodes if n.type == COMM_COLL_NODE]
    scatter = [n for n in comm if n.attrs["comm_type"] == COMM_TYPES["reduce_scatter"]]
    gather = [n for n in comm if n.attrs["comm_type"] == COMM_TYPES["all_gather"]]
    assert len(scatter) + len(gather) == len(comm) and len(gather) == 1
    assert sum(n.attrs["comm_size"] for n in scatter) == 25_557_032 * 4   # fp32 gradients, every byte once
    assert gather[0].attrs["comm_size"] == 25_557_032 * 2                 # the fp16 (cast) parameters
    update = next(n for n in nodes if n.name == "optimizer.shard")
    assert gather[0].data_deps == [update.id]
    assert set(update.data_deps) == {n.id for n in scatter} | {update.id - 1 - len(scatter)}  # and the last backward op
    engine = run_scenario(sc).breakdown
    shard_s = sum(r.time_s for r in engine if r.phase == "optimizer")
    assert update.duration_micros == max(1, round(shard_s * 1e6))


def test_export_zero3_gathers_each_layer_before_each_pass(tmp_path):
    """ZeRO-3 / FSDP: the same per-layer all-gathers as perfforge's own step, each one ahead of its layer's first
    kernel and issued once the previous layer has started (one layer of prefetch); no final parameter gather."""
    from perfforge.api import run_scenario

    sc = _scenario(gpus=16, zero=3, optimizer="adamw")
    export(sc, tmp_path)
    _, nodes = read_et((tmp_path / "workload.0.et").read_bytes())
    by_id = {n.id: n for n in nodes}
    gathers = [n for n in nodes if n.type == COMM_COLL_NODE and n.attrs["comm_type"] == COMM_TYPES["all_gather"]]
    engine = [r for r in run_scenario(sc).breakdown if r.kind == "all_gather"]
    assert [g.name for g in gathers] == [r.name for r in engine]
    assert sum(g.attrs["comm_size"] for g in gathers) == pytest.approx(sum(r.bytes for r in engine))
    assert not any(g.name == "allgather.parameters" for g in gathers)
    kernels = [n for n in nodes if n.type == COMP_NODE and not n.name.startswith("optimizer")]
    waiting = {d: n for n in kernels for d in n.data_deps if by_id[d] in gathers}
    assert set(waiting) == {g.id for g in gathers}            # every gather has one kernel waiting for it
    order = {n.id: k for k, n in enumerate(kernels)}   # position in the compute stream
    assert gathers[0].data_deps == [] and gathers[1].data_deps == []   # both ready at the start
    for earlier, later in zip(gathers[1:], gathers[2:]):
        # issued once the previous layer has started, i.e. when the kernel before that layer is done: not before
        # the kernel before the earlier gather's layer, and before the kernel before its own layer
        (issue,) = later.data_deps
        assert order[waiting[earlier.id].id] - 1 <= order[issue] < order[waiting[later.id].id] - 1


def test_cli_export_takes_zero_amp_and_a_scenario_yaml(tmp_path):
    from perfforge.cli.main import main

    assert main(["astra-sim", "export", "--out", str(tmp_path / "z"), "--model", "resnet50", "--hardware",
                 "a100-sxm4-80gb", "--gpus", "8", "--batch", "64", "--zero", "1", "--amp", "--fuse-bn-act"]) == 0
    manifest = json.loads((tmp_path / "z" / "manifest.json").read_text())
    assert manifest["scenario"]["zero"] == 1 and manifest["scenario"]["amp"] and manifest["scenario"]["fuse_bn_act"]
    _, nodes = read_et((tmp_path / "z" / "workload.0.et").read_bytes())
    assert any(n.name == "allgather.parameters" for n in nodes)
    (tmp_path / "job.yaml").write_text("model: resnet50\nhardware: a100-sxm4-80gb\ngpus: 16\nbatch: 32\n"
                                       "optimizer: sgd_momentum\n")
    assert main(["astra-sim", "export", "--out", str(tmp_path / "y"), "--model", str(tmp_path / "job.yaml")]) == 0
    assert json.loads((tmp_path / "y" / "manifest.json").read_text())["npus"] == 16
    assert main(["astra-sim", "export", "--out", str(tmp_path / "x"), "--model", "resnet50"]) == 2   # no hardware


def test_a_data_parallel_export_replays_to_perfforges_step(tmp_path):
    from perfforge.adapters.chakra_replay import replay_export
    from perfforge.cli.main import main

    for zero in (0, 1, 3):
        folder = tmp_path / f"z{zero}"
        export(_scenario(zero=zero), folder)
        out = replay_export(folder)
        assert out["ratio"] == pytest.approx(1.0, abs=0.01) and out["ranks_replayed"] == 1   # identical ranks
    main(["astra-sim", "replay", str(tmp_path / "z0"), "--json"])


def test_a_no_overlap_export_waits_for_backward(tmp_path):
    # overlap=False (MLPerf's MXNet recipe): every bucket depends on the last backward op, and the replay agrees
    # with perfforge's own step; the overlapped export of the same job finishes earlier
    from perfforge.adapters.chakra_replay import replay_export

    for zero in (1, 3):   # ZeRO's reduce-scatters wait the same way
        folder = tmp_path / f"z{zero}"
        export(_scenario(overlap=False, zero=zero), folder)
        assert replay_export(folder)["ratio"] == pytest.approx(1.0, abs=0.01)
    steps = {}
    for overlap in (True, False):
        folder = tmp_path / f"o{overlap}"
        export(_scenario(overlap=overlap, optimizer="lars"), folder)
        _, nodes = read_et((folder / "workload.0.et").read_bytes())
        last_compute = max(n.id for n in nodes if n.type == COMP_NODE and not n.name.startswith("optimizer"))
        deps = {d for n in nodes if n.name.startswith("allreduce.bucket") for d in n.data_deps}
        assert (deps == {last_compute}) is (not overlap)
        out = replay_export(folder)
        assert out["ratio"] == pytest.approx(1.0, abs=0.01)
        steps[overlap] = out["replay_s"]
    assert steps[True] < steps[False]
