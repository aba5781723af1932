"""DistributedEngine: data-parallel training on N devices (symmetric, simulated on one device's timeline)."""

from __future__ import annotations

from typing import ClassVar

from perfforge.core.dtypes import DType
from perfforge.distributed.data_parallel import gradient_producers, simulate_dp_step
from perfforge.distributed.topology import cluster_topology, default_node
from perfforge.engines.analytical.engine import AnalyticalEngine
from perfforge.engines.base import ENGINES
from perfforge.result import MemoryFootprint, Result
from perfforge.scenario import Scenario
from perfforge.system.system import System
from perfforge.workload.graph import Workload

FP32_BYTES = 4


@ENGINES.register("distributed")
class DistributedEngine:
    """Data parallelism with DDP-style gradient buckets over a node x network topology.

    Gradients are reduced in fp32 (PyTorch AMP keeps fp32 parameters, so DDP all-reduces fp32 gradients).
    Tensor, pipeline and ZeRO/FSDP parallelism are not modelled yet: ``supports`` says so.
    """

    name: ClassVar[str] = "distributed"

    def supports(self, workload: Workload, system: System, scenario: Scenario) -> tuple[bool, str]:
        if scenario.mode != "train":
            return False, "the distributed engine simulates training steps (mode=train)"
        return True, ""

    def run(self, workload: Workload, system: System, scenario: Scenario) -> Result:
        ok, reason = self.supports(workload, system, scenario)
        if not ok:
            raise ValueError(reason)
        single = AnalyticalEngine()
        cal = single.calibration_for(system, scenario)
        one = single.run(workload, System(device=system.device), scenario)
        node_id = scenario.node or default_node(system.device.id)
        topology = cluster_topology(node_id, scenario.gpus)
        records = [r for r in one.breakdown if r.stream == "compute"]
        timeline = simulate_dp_step(
            records, gradient_producers(workload), grad_bytes=FP32_BYTES, topology=topology,
            algorithms={d.name: scenario.collective_algorithm for d in topology.dims},
            efficiency=cal.collective_efficiency, overlap=scenario.overlap)
        step = max(timeline.step_time_s, one.host_time_s)
        n = scenario.gpus
        mem = one.memory
        buckets = workload.params * FP32_BYTES if n > 1 else 0.0  # DDP's flat gradient buckets
        memory = MemoryFootprint(weights=mem.weights, gradients=mem.gradients + buckets,
                                 optimizer_states=mem.optimizer_states, activations=mem.activations,
                                 kv_cache=mem.kv_cache, overhead=mem.overhead, capacity=mem.capacity, usable=mem.usable)
        extra = {
            "gpus": n, "node": node_id, "compute_s": timeline.compute_s, "comm_s": timeline.comm_s,
            "exposed_comm_s": max(0.0, step - timeline.compute_s), "comm_share": timeline.comm_s / step if step else 0.0,
            "gradient_buckets": timeline.buckets, "memory_bytes_per_device": memory.total,
            "topology": [{"name": d.name, "kind": d.kind, "npus": d.npus, "bytes_per_s": d.bytes_per_s,
                          "latency_s": d.latency_s} for d in topology.dims],
        }
        return Result(
            model=workload.name, hardware=system.device.id, engine=self.name, mode="train", dtype=workload.dtype.value,
            batch=workload.batch, seq=workload.seq, step_time_s=step, samples_per_step=workload.batch * n,
            tokens_per_step=one.tokens_per_step * n, params=workload.params, flops_per_step=one.flops_per_step * n,
            model_flops_per_step=one.model_flops_per_step * n,
            peak_flop_per_s=system.device.peak_flop_per_s(DType(workload.dtype)) * n, memory=memory,
            breakdown=timeline.records, unmodelled=one.unmodelled,
            provenance={**one.provenance, "engine": self.name, "node": node_id}, host_time_s=one.host_time_s,
            extra=extra,
        )
