"""Drive the real ASTRA-sim from a perfforge training scenario.

``export`` writes what ASTRA-sim 2.x reads: one Chakra trace per NPU (``workload.<npu>.et``), the analytical
backend's network YAML, a system JSON and a remote-memory JSON, plus ``manifest.json``. Compute node
durations are perfforge's per-op predictions (microseconds, at least 1). Data parallelism (any model): gradient
buckets become all-reduce collective nodes that depend on the backward op completing them, exactly as
perfforge's data-parallel engine schedules them. Tensor and pipeline parallelism (decoder transformers, zoo or HF config.json):
``perfforge.adapters.astrasim_hybrid`` writes per-rank traces with point-to-point sends and receives and
collectives over communicator groups (``comm_groups.json``). ``run`` executes a user-provided ASTRA-sim binary (``--binary`` or ``ASTRA_SIM_BIN``)
on an exported folder and parses its report lines. No ASTRA-sim code or binary ships with perfforge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from perfforge.adapters.chakra import COMM_COLL_NODE, COMM_TYPES, COMP_NODE, EtNode, write_et
from perfforge.core.errors import ConfigError
from perfforge.distributed.data_parallel import bucket_plan, gradient_producers, layer_params, zero3_segment
from perfforge.distributed.topology import Topology, job_topology
from perfforge.scenario import Scenario
from perfforge.workload.optimizer import state_bytes

ENV_BINARY = "ASTRA_SIM_BIN"
GIB = 2**30
# perfforge's collective algorithms by ASTRA-sim's names for them (ASTRA-sim's Sys.cc,
# generate_collective_implementation_from_input: "ring", "direct", "halvingDoubling", "doubleBinaryTree")
ALGORITHMS = {"ring": "ring", "direct": "direct", "halving_doubling": "halvingDoubling",
              "double_binary_tree": "doubleBinaryTree"}


def _network_yaml(topo: Topology) -> tuple[str, int]:
    names = {"switch": "Switch", "ring": "Ring", "fully_connected": "FullyConnected"}
    dims = topo.dims
    lines = [
        f"topology: [ {', '.join(names[d.kind] for d in dims)} ]",
        f"npus_count: [ {', '.join(str(d.npus) for d in dims)} ]",
        f"bandwidth: [ {', '.join(f'{d.bytes_per_s / GIB:.3f}' for d in dims)} ]  # GB/s, 1 GB = 2^30 B",
        f"latency: [ {', '.join(f'{d.latency_s * 1e9:.1f}' for d in dims)} ]  # ns",
    ]
    return "\n".join(lines) + "\n", topo.npus


def export(scenario: Scenario, out_dir: str | Path) -> dict[str, Any]:
    """Write ASTRA-sim inputs for a training scenario; returns the manifest.

    Data parallelism: DDP all-reduces the gradient buckets; ZeRO-1/2 reduce-scatters them, updates this rank's
    shard and all-gathers the updated parameters; ZeRO-3 (FSDP) all-gathers each layer's parameters before its
    forward and its backward, a gather issued once the previous layer has started (one layer of prefetch), as
    perfforge's own step does. Tensor/pipeline parallelism and microbatches: ``astrasim_hybrid``."""
    if scenario.mode != "train":
        raise ConfigError("ASTRA-sim export covers training scenarios (mode=train)")
    if scenario.loader_workers is not None:
        # the host's data loader prefetches alongside the whole step; an NPU's trace runs its compute nodes one at
        # a time, so a loader bound has no place in it
        raise ConfigError("loader_workers: the host input-pipeline bound cannot be expressed in ASTRA-sim traces; "
                          "export the scenario without it (the GPU step), or compare with `perfforge train`")
    out = Path(out_dir)
    if scenario.tp > 1 or scenario.pp > 1 or scenario.microbatches > 1:
        from perfforge.adapters.astrasim_hybrid import export_hybrid

        part = export_hybrid(scenario, out)
        topo = part.pop("topology")
    else:
        nodes, topo = _data_parallel_trace(scenario)
        out.mkdir(parents=True, exist_ok=True)
        for npu in range(topo.npus):  # data parallelism: every NPU runs the same trace
            with open(out / f"workload.{npu}.et", "wb") as fh:
                write_et(fh, nodes)
        part = {"nodes_per_trace": len(nodes), "collectives": sum(n.type == COMM_COLL_NODE for n in nodes),
                "comm_groups": None}
    net_text, npus = _network_yaml(topo)
    (out / "network.yml").write_text(net_text)
    algo = ALGORITHMS[scenario.collective_algorithm]
    dims = len(topo.dims)
    system = {"scheduling-policy": "LIFO", "endpoint-delay": 10, "active-chunks-per-dimension": 1,
              "preferred-dataset-splits": 4, "all-reduce-implementation": [algo] * dims,
              "all-gather-implementation": [algo] * dims, "reduce-scatter-implementation": [algo] * dims,
              "all-to-all-implementation": [algo] * dims, "collective-optimization": "localBWAware",
              "local-mem-bw": 1600, "boost-mode": 0}
    (out / "system.json").write_text(json.dumps(system, indent=2))
    (out / "memory.json").write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}, indent=2))
    manifest = {"scenario": scenario.model_dump(mode="json"), "npus": npus, **part, "workload_prefix": "workload",
                "note": "durations are perfforge predictions in microseconds; comm_size in bytes"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _data_parallel_trace(scenario: Scenario) -> tuple[list[EtNode], Topology]:
    """The one trace every rank of a data-parallel step runs, and the job's topology."""
    from perfforge.api import run_scenario, scenario_workload
    from perfforge.distributed.engine import shard_update_s
    from perfforge.system.catalog import get_device
    from perfforge.system.system import System

    zero = scenario.zero if scenario.gpus > 1 else 0
    # the same workload, fabric and gradient width as perfforge's own data-parallel step
    workload = scenario_workload(scenario)
    _, topo = job_topology(scenario.hardware, scenario.node, scenario.gpus)
    single = run_scenario(scenario.model_copy(update={"gpus": 1, "engine": "analytical"}), workload)
    records = [r for r in single.breakdown if r.stream == "compute" and r.phase != "optimizer"]
    optimizer = [r for r in single.breakdown if r.phase == "optimizer"]
    nodes: list[EtNode] = []
    prev: int | None = None
    rec_node: dict[int, int] = {}
    comm_ids: list[int] = []
    dims = len(topo.dims)
    per_layer = layer_params(workload) if zero == 3 else {}
    segment, segment_start, gathered = None, None, set()
    for i, rec in enumerate(records):
        waits: list[int] = []
        if zero == 3 and zero3_segment(rec) != segment:
            segment = zero3_segment(rec)
            if per_layer.get(rec.layer) and segment not in gathered:
                gathered.add(segment)
                gather = EtNode(len(nodes), f"allgather.{segment[0]}.{rec.layer}", COMM_COLL_NODE,
                                data_deps=[segment_start] if segment_start is not None else [],
                                attrs={"is_cpu_op": False, "comm_type": COMM_TYPES["all_gather"],
                                       "comm_size": int(per_layer[rec.layer] * workload.param_dtype.bytes),
                                       "involved_dim": [True] * dims})
                nodes.append(gather)
                comm_ids.append(gather.id)
                waits = [gather.id]
            segment_start = prev   # this segment starts when that node is done (a data dependency waits for it)
        node = EtNode(len(nodes), rec.name, COMP_NODE, duration_micros=max(1, round(rec.time_s * 1e6)),
                      data_deps=([prev] if prev is not None else []) + waits, attrs={"is_cpu_op": False})
        nodes.append(node)
        rec_node[i] = node.id
        prev = node.id
    grad_bytes = state_bytes(workload.param_dtype)
    reduce = "reduce_scatter" if zero else "all_reduce"
    backward_end = prev
    for k, (index, size) in enumerate(bucket_plan(records, gradient_producers(workload), grad_bytes=grad_bytes)):
        # overlapped: a bucket starts once its last gradient exists; otherwise every bucket waits for backward's end
        ready = rec_node[index] if scenario.overlap else backward_end
        node = EtNode(len(nodes), f"{reduce.replace('_', '')}.bucket{k}", COMM_COLL_NODE, data_deps=[ready],
                      attrs={"is_cpu_op": False, "comm_type": COMM_TYPES[reduce], "comm_size": int(size),
                             "involved_dim": [True] * dims})
        nodes.append(node)
        comm_ids.append(node.id)
    updates = [(r.name, r.time_s) for r in optimizer]
    if zero and updates:   # this rank updates its shard, as perfforge's own ZeRO step does
        system = System(device=get_device(scenario.hardware), num_devices=scenario.gpus)
        updates = [("optimizer.shard", shard_update_s(workload, system, scenario))]
    for name, seconds in updates:
        node = EtNode(len(nodes), name, COMP_NODE, duration_micros=max(1, round(seconds * 1e6)),
                      data_deps=([prev] if prev is not None else []) + list(comm_ids),
                      attrs={"is_cpu_op": False})
        nodes.append(node)
        prev = node.id
    if zero in (1, 2):
        node = EtNode(len(nodes), "allgather.parameters", COMM_COLL_NODE, data_deps=[prev] if prev is not None else [],
                      attrs={"is_cpu_op": False, "comm_type": COMM_TYPES["all_gather"],
                             "comm_size": int(workload.params * workload.param_dtype.bytes),
                             "involved_dim": [True] * dims})
        nodes.append(node)
        comm_ids.append(node.id)
    return nodes, topo


def find_binary(binary: str | None) -> str:
    path = binary or os.environ.get(ENV_BINARY)
    if not path:
        raise ConfigError(f"no ASTRA-sim binary configured: pass --binary PATH or set {ENV_BINARY} "
                          "(perfforge does not ship or build ASTRA-sim)")
    resolved = shutil.which(path) or (path if Path(path).is_file() else None)
    if not resolved:
        raise ConfigError(f"ASTRA-sim binary not found: {path}")
    return resolved


def run(folder: str | Path, binary: str | None = None, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ASTRA-sim's analytical backend on an exported folder; returns finish and exposed communication."""
    from perfforge.evaluation.external_logs import parse_astrasim_log

    exe = find_binary(binary)
    f = Path(folder)
    if not (f / "manifest.json").exists():
        raise ConfigError(f"{f}: not an exported folder (run `perfforge astra-sim export` first)")
    groups = json.loads((f / "manifest.json").read_text()).get("comm_groups")
    cmd = [exe, f"--workload-configuration={f / 'workload'}", f"--system-configuration={f / 'system.json'}",
           f"--network-configuration={f / 'network.yml'}", f"--remote-memory-configuration={f / 'memory.json'}"]
    if groups:   # only where needed: binaries older than ASTRA-sim's communicator groups do not know the option
        cmd.append(f"--comm-group-configuration={f / groups}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise ConfigError(f"ASTRA-sim exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    recs = parse_astrasim_log(proc.stdout + proc.stderr)
    finish = max(r["finish_ns"] for r in recs)
    exposed = max((r["exposed_comm_ns"] or 0) for r in recs)
    return {"finish_ns": finish, "exposed_comm_ns": exposed, "step_time_s": finish * 1e-9, "npus_reported": len(recs),
            "command": " ".join(cmd)}


class AstraSimEngine:
    """The real ASTRA-sim as a perfforge engine: export the scenario, run the binary, parse its report.

    ``supports`` is False (with the reason) when no binary is configured, so experiment suites report its
    rows as not run instead of inventing numbers.
    """

    name = "astra-sim"

    def supports(self, workload: Any, system: Any, scenario: Scenario) -> tuple[bool, str]:
        if scenario.mode != "train":
            return False, "the ASTRA-sim adapter covers training steps"
        try:
            find_binary(None)
        except ConfigError as exc:
            return False, str(exc)
        return True, ""

    def run(self, workload: Any, system: Any, scenario: Scenario) -> Any:
        import tempfile

        from perfforge.result import MemoryFootprint, Result

        ok, reason = self.supports(workload, system, scenario)
        if not ok:
            raise ConfigError(reason)
        with tempfile.TemporaryDirectory(prefix="perfforge-astrasim-") as tmp:
            manifest = export(scenario, tmp)
            out = run(tmp)
        zero = MemoryFootprint(0, 0, 0, 0, 0, 0, system.device.memory_bytes, system.device.memory_bytes)
        return Result(model=workload.name, hardware=system.device.id, engine=self.name, mode="train",
                      dtype=workload.dtype.value, batch=workload.batch, seq=workload.seq, step_time_s=out["step_time_s"],
                      samples_per_step=workload.batch * manifest["npus"], tokens_per_step=workload.tokens * manifest["npus"],
                      params=workload.params, flops_per_step=0.0, model_flops_per_step=0.0, peak_flop_per_s=0.0,
                      memory=zero, breakdown=(), provenance={"engine": self.name, "command": out["command"]},
                      extra={"finish_ns": out["finish_ns"], "exposed_comm_ns": out["exposed_comm_ns"],
                             "exposed_comm_s": out["exposed_comm_ns"] * 1e-9})
