"""DistributedEngine: data-parallel training on N devices (symmetric, simulated on one device's timeline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, NamedTuple

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.distributed.data_parallel import (
    gradient_producers,
    layer_params,
    simulate_dp_step,
    simulate_zero3_step,
)
from perfforge.distributed.topology import default_node, job_topology
from perfforge.engines.analytical.engine import AnalyticalEngine
from perfforge.engines.analytical.roofline import op_time
from perfforge.engines.base import ENGINES
from perfforge.result import MemoryFootprint, Result
from perfforge.scenario import Scenario
from perfforge.system.input_pipeline import apply_input_bound
from perfforge.system.system import System
from perfforge.workload.graph import Workload
from perfforge.workload.optimizer import get_optimizer, optimizer_op, state_bytes

if TYPE_CHECKING:
    from perfforge.distributed.hybrid import HybridPlan, ParallelConfig
    from perfforge.engines.analytical.calibration import Calibration
    from perfforge.system.network import NodeSpec
    from perfforge.workload.models.transformer import TransformerConfig

BACKEND_KEYS = ("backend", "learned_model", "learned_ops", "fallback_ops", "fallback_note", "kernel_time_low_s",
                "kernel_time_high_s")


def shard_update_s(workload: Workload, system: System, scenario: Scenario) -> float:
    """ZeRO: the time of this rank's optimizer update of its 1/gpus of the parameters."""
    update = optimizer_op(get_optimizer(scenario.optimizer), -(-workload.params // scenario.gpus),
                          workload.param_dtype)
    return op_time(update, system.device, AnalyticalEngine().calibration_for(system, scenario)).time_s


@ENGINES.register("distributed")
class DistributedEngine:
    """Multi-GPU training over a node x network topology.

    Pure data parallelism (any model) simulates one device's timeline with DDP-style gradient buckets;
    gradients are reduced in fp32 (PyTorch AMP keeps fp32 parameters, so DDP all-reduces fp32 gradients).
    Tensor/pipeline parallelism, microbatching and ZeRO (decoders: zoo ids or HF config.json) go through
    ``perfforge.distributed.hybrid``.
    """

    name: ClassVar[str] = "distributed"

    def supports(self, workload: Workload, system: System, scenario: Scenario) -> tuple[bool, str]:
        if scenario.mode != "train":
            return False, "the distributed engine simulates training steps (mode=train)"
        return True, ""

    def run(self, workload: Workload, system: System, scenario: Scenario) -> Result:
        ok, reason = self.supports(workload, system, scenario)
        if not ok:
            raise ConfigError(reason)
        if scenario.sequence_parallel and scenario.tp == 1:
            raise ConfigError("sequence_parallel splits norms and dropout over the tensor-parallel group: it needs "
                              "tp > 1")
        if scenario.pp == 1 and (scenario.schedule != "1f1b" or scenario.virtual_stages != 1):
            raise ConfigError("schedule and virtual_stages order a pipeline's stages: they need pp > 1")
        if scenario.tp > 1 or scenario.pp > 1 or scenario.microbatches > 1:
            return self._run_hybrid(workload, system, scenario)
        single = AnalyticalEngine()
        cal = single.calibration_for(system, scenario)
        one = single.run(workload, System(device=system.device), scenario)
        node_id, topology = job_topology(system.device.id, scenario.node, scenario.gpus)
        records = [r for r in one.breakdown if r.stream == "compute"]
        grad_bytes = state_bytes(workload.param_dtype)   # fp32 (AMP, or cast with fp32 master weights); fp64 stays fp64
        n, zero = scenario.gpus, scenario.zero if scenario.gpus > 1 else 0
        optimizer_s = shard_update_s(workload, system, scenario) if zero else None
        algorithms = {d.name: scenario.collective_algorithm for d in topology.dims}
        param_bytes = workload.param_dtype.bytes
        per_layer = layer_params(workload)
        if zero == 3:
            timeline = simulate_zero3_step(
                records, gradient_producers(workload), per_layer, grad_bytes=grad_bytes, gather_bytes=param_bytes,
                topology=topology, algorithms=algorithms, efficiency=cal.collective_efficiency,
                launch_s=cal.collective_launch_s, optimizer_s=optimizer_s, overlap=scenario.overlap)
        else:
            timeline = simulate_dp_step(
                records, gradient_producers(workload), grad_bytes=grad_bytes, topology=topology, algorithms=algorithms,
                efficiency=cal.collective_efficiency, overlap=scenario.overlap, streams=scenario.comm_streams,
                shared_links=scenario.shared_links, launch_s=cal.collective_launch_s, zero=zero,
                gather_bytes=workload.params * param_bytes, optimizer_s=optimizer_s)
        step = max(timeline.step_time_s, one.host_time_s)
        mem = one.memory
        # DDP keeps a flat copy of every gradient in its buckets; ZeRO reduce-scatters from a fixed-size bucket.
        # ZeRO-3 holds 1/n of the weights plus the layers gathered at a time (the current one and the prefetched one)
        buckets = workload.params * grad_bytes if n > 1 and not zero else 0.0
        weights = (mem.weights / n + 2 * max(per_layer.values(), default=0) * param_bytes if zero == 3
                   else mem.weights)
        memory = MemoryFootprint(weights=weights, gradients=mem.gradients / (n if zero >= 2 else 1) + buckets,
                                 optimizer_states=mem.optimizer_states / (n if zero else 1), activations=mem.activations,
                                 kv_cache=mem.kv_cache, overhead=mem.overhead, capacity=mem.capacity, usable=mem.usable)
        extra = {
            "gpus": n, "node": node_id, "precision": one.extra.get("precision", "cast"), "zero": zero,
            "compute_s": timeline.compute_s, "comm_s": timeline.comm_s,
            "exposed_comm_s": max(0.0, step - timeline.compute_s), "comm_share": timeline.comm_s / step if step else 0.0,
            "gradient_buckets": timeline.buckets, "memory_bytes_per_device": memory.total,
            "topology": [{"name": d.name, "kind": d.kind, "npus": d.npus, "bytes_per_s": d.bytes_per_s,
                          "latency_s": d.latency_s} for d in topology.dims],
            # the per-op backend's own account (the learned model's id, its fallbacks and kernel-time interval)
            **{k: v for k, v in one.extra.items() if k in BACKEND_KEYS},
        }
        result = Result(
            model=workload.name, hardware=system.device.id, engine=self.name, mode="train", dtype=workload.dtype.value,
            batch=workload.batch, seq=workload.seq, step_time_s=step, samples_per_step=workload.batch * n,
            tokens_per_step=one.tokens_per_step * n, params=workload.params, flops_per_step=one.flops_per_step * n,
            model_flops_per_step=one.model_flops_per_step * n,
            peak_flop_per_s=system.device.peak_flop_per_s(DType(workload.dtype)) * n, memory=memory,
            breakdown=timeline.records, unmodelled=one.unmodelled,
            provenance={**one.provenance, "engine": self.name, "node": node_id}, host_time_s=one.host_time_s,
            extra=extra,
        )
        return apply_input_bound(result, scenario.loader_workers, scenario.loader_rate, workload.batch,
                                 cal.loader_samples_per_s_per_worker)

    def _run_hybrid(self, workload: Workload, system: System, scenario: Scenario) -> Result:
        from perfforge.distributed.hybrid import simulate_hybrid

        h = hybrid_inputs(workload, system, scenario)
        par, node, cal = h.par, h.node, h.cal
        n = scenario.gpus
        step = simulate_hybrid(h.config, device=system.device, node=node, net_bw=h.net_bw, net_lat=h.net_lat, cal=cal,
                               par=par, batch=workload.batch, seq=workload.seq, dtype=workload.dtype,
                               optimizer=scenario.optimizer, backend=scenario.backend)
        mem = MemoryFootprint(weights=step.memory["weights"], gradients=step.memory["gradients"],
                              optimizer_states=step.memory["optimizer_states"], activations=step.memory["activations"],
                              kv_cache=0.0, overhead=cal.framework_overhead_bytes, capacity=system.device.memory_bytes,
                              usable=system.device.memory_bytes * cal.usable_memory_fraction)
        samples = workload.batch * par.dp
        # Megatron-style half-precision modules (amp is rejected for these scenarios)
        extra = {"backend": scenario.backend, **step.backend_info,
                 "gpus": n, "node": node.id, "precision": "cast", "tp": par.tp, "pp": par.pp, "dp": par.dp,
                 "zero": par.zero,
                 "microbatches": par.microbatches, "schedule": par.schedule, "compute_s": step.compute_s,
                 "tp_comm_s": step.tp_comm_s, "pp_comm_s": step.pp_comm_s, "pipeline_bubble_s": step.bubble_s,
                 "comm_s": step.tp_comm_s + step.pp_comm_s + step.dp_comm_s, "dp_comm_s": step.dp_comm_s,
                 "exposed_comm_s": step.tp_comm_s + step.pp_comm_s + step.exposed_dp_s,
                 "optimizer_s": step.optimizer_s, "memory_bytes_per_device": mem.total, **step.detail}
        return Result(
            model=workload.name, hardware=system.device.id, engine=self.name, mode="train",
            dtype=workload.dtype.value, batch=workload.batch, seq=workload.seq, step_time_s=step.step_time_s,
            samples_per_step=samples, tokens_per_step=samples * workload.seq, params=workload.params,
            flops_per_step=step.executed_flops, model_flops_per_step=step.model_flops,
            peak_flop_per_s=system.device.peak_flop_per_s(DType(workload.dtype)) * n, memory=mem,
            breakdown=step.records,
            provenance={"engine": self.name, "mode": "tensor x pipeline x data parallel", "node": node.id,
                        "calibration": cal.source}, extra=extra,
        )


class HybridInputs(NamedTuple):
    """What the tensor x pipeline x data parallel model needs from a scenario (``hybrid_inputs``)."""

    config: TransformerConfig   # the decoder's (zoo or HF config.json)
    par: ParallelConfig
    node: NodeSpec              # the node the GPUs sit in
    net_bw: float               # bytes/s per GPU across nodes
    net_lat: float              # seconds
    cal: Calibration


def hybrid_inputs(workload: Workload, system: System, scenario: Scenario) -> HybridInputs:
    """Check a tensor/pipeline-parallel (or microbatched, or ZeRO with those) scenario and resolve what
    ``simulate_hybrid`` and ``plan_hybrid`` take; shared by the engine and the ASTRA-sim export."""
    from perfforge.distributed.hybrid import ParallelConfig
    from perfforge.distributed.topology import network_link
    from perfforge.system.catalog import get_node
    from perfforge.workload.decoders import decoder_config, is_config_path
    from perfforge.workload.zoo import MODELS

    if scenario.loader_workers is not None:
        raise ConfigError("loader_workers: the input-pipeline bound covers single-device and data-parallel "
                          "steps, not tensor/pipeline parallelism or ZeRO")
    # options the Megatron-style model does not describe: refuse them rather than ignore them
    ignored = [name for name, value, default in (
        ("attention_impl", scenario.attention_impl, "fused"), ("dropout", scenario.dropout, 0.0),
        ("collective_algorithm", scenario.collective_algorithm, "ring"), ("comm_streams", scenario.comm_streams, 1),
        ("shared_links", scenario.shared_links, True), ("memory_format", scenario.memory_format, "nhwc"),
        ("fuse_bn_act", scenario.fuse_bn_act, False), ("head", scenario.head, None)) if value != default]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)}: not modelled with tensor/pipeline parallelism, ZeRO or "
                          "microbatches (Megatron-style fused layers, ring collectives, one stream); leave "
                          "them at their defaults")
    # the decoder's architecture, from the zoo or the scenario's HF config.json (a traced or hand-built workload
    # has none to shard)
    source = scenario.model if isinstance(scenario.model, str) and is_config_path(scenario.model) else workload.name
    if source not in MODELS and not is_config_path(source):
        raise ConfigError(f"tensor/pipeline parallelism and microbatches need a decoder transformer (a zoo id or an "
                          f"HF config.json), not {workload.name} (data parallelism with ZeRO 0-3 covers every model)")
    config = decoder_config(source, needs="tensor/pipeline parallelism and microbatches need a decoder transformer "
                                          "(data parallelism with ZeRO 0-3 covers every model)")
    n = scenario.gpus
    if n % (scenario.tp * scenario.pp):
        raise ConfigError(f"gpus {n} is not a multiple of tp x pp = {scenario.tp * scenario.pp}")
    par = ParallelConfig(tp=scenario.tp, pp=scenario.pp, dp=n // (scenario.tp * scenario.pp), zero=scenario.zero,
                         microbatches=scenario.microbatches, schedule=scenario.schedule,
                         virtual_stages=scenario.virtual_stages, sequence_parallel=scenario.sequence_parallel,
                         recompute=scenario.recompute, overlap=scenario.overlap)
    # job_topology checks the node against the device and that the GPUs fill whole nodes
    node = get_node(job_topology(system.device.id, scenario.node, n)[0] or default_node(system.device.id))
    net_bw, net_lat = network_link(node)
    cal = AnalyticalEngine().calibration_for(system, scenario)
    return HybridInputs(config, par, node, net_bw, net_lat, cal)


def hybrid_plan(scenario: Scenario) -> tuple[HybridPlan, HybridInputs, Workload]:
    """A tensor/pipeline-parallel scenario's ``HybridPlan`` as the engine builds it (with the inputs and the
    workload it came from): what the ASTRA-sim export writes out and its replay prices."""
    from perfforge.api import scenario_workload
    from perfforge.distributed.hybrid import plan_hybrid
    from perfforge.system.catalog import get_device

    workload = scenario_workload(scenario)
    device = get_device(scenario.hardware)
    h = hybrid_inputs(workload, System(device=device, num_devices=scenario.gpus), scenario)
    plan = plan_hybrid(h.config, device=device, node=h.node, net_bw=h.net_bw, net_lat=h.net_lat, cal=h.cal,
                       par=h.par, batch=workload.batch, seq=workload.seq, dtype=workload.dtype,
                       backend=scenario.backend)
    return plan, h, workload
