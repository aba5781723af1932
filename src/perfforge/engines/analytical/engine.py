"""AnalyticalEngine: sums per-op roofline times over one device's stream."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

from perfforge import __version__
from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.engines.analytical.calibration import Calibration, load_calibration
from perfforge.engines.analytical.memory import footprint
from perfforge.engines.analytical.timers import OP_TIMERS, with_conv_layout
from perfforge.engines.base import ENGINES
from perfforge.result import OpRecord, Result
from perfforge.scenario import Scenario
from perfforge.system.input_pipeline import apply_input_bound
from perfforge.system.system import System
from perfforge.workload.graph import Workload
from perfforge.workload.op import Op, Phase
from perfforge.workload.optimizer import get_optimizer


@ENGINES.register("analytical")
class AnalyticalEngine:
    """Roofline with shape-aware efficiency. One device, one stream, ops back to back."""

    name: ClassVar[str] = "analytical"

    def __init__(self, calibration: Calibration | None = None) -> None:
        self._calibration = calibration

    def supports(self, workload: Workload, system: System, scenario: Scenario) -> tuple[bool, str]:
        if system.num_devices != 1:
            return False, "the analytical engine models one device; use the distributed engine (perfforge train)"
        return True, ""

    def calibration_for(self, system: System, scenario: Scenario) -> Calibration:
        if self._calibration is not None:
            return self._calibration
        return load_calibration(system.device.architecture, scenario.calibration)

    def run(self, workload: Workload, system: System, scenario: Scenario) -> Result:
        ok, reason = self.supports(workload, system, scenario)
        if not ok:
            raise ConfigError(reason)
        device = system.device
        cal = self.calibration_for(system, scenario)
        mode = scenario.mode
        optimizer = get_optimizer(scenario.optimizer) if mode == "train" else None
        if optimizer is not None:
            ops: tuple[Op, ...] = workload.training_ops(optimizer)
            if scenario.recompute:
                # full recomputation replays every block's forward before its backward
                recomputed = tuple(op.with_(name=f"recompute.{op.name}", phase=Phase.FORWARD)
                                   for op in workload.training_forward)
                ops = ops + recomputed
        else:
            ops = workload.ops
        compute_dtype = workload.dtype
        records: list[OpRecord] = []
        unmodelled: list[str] = []
        clock = 0.0
        syncs: list[bool] = []
        if scenario.backend not in OP_TIMERS:
            import perfforge.engines.learned  # noqa: F401  (registers the learned backend)
        timings, backend_info = OP_TIMERS.get(scenario.backend)().time_ops(ops, device, cal, compute_dtype)
        timings = with_conv_layout(timings, ops, cal, scenario.memory_format, compute_dtype)
        for op, t in zip(ops, timings):
            if t is None:
                unmodelled.append(op.name)
                continue
            phase = "recompute" if op.name.startswith("recompute.") else op.phase.value
            records.append(OpRecord(op.name, op.kind.value, op.layer, phase, t.time_s, op.flops, op.bytes,
                                    t.bound, start_s=clock))
            syncs.append(bool(op.attrs.get("host_sync")) and phase in ("forward", "recompute"))
            clock += t.time_s
        # a graph traced from a PyTorch module has one op per launched aten op, a finer grain than the zoo's
        # fused graph; the zoo's eager graphs list kernels at that grain too
        kernel_grain = workload.meta.get("family") == "torch" or workload.meta.get("op_granularity") == "kernel"
        per_op = cal.host_overhead_traced_op_s if kernel_grain else cal.host_overhead_s
        host_time, busy = 0.0, clock
        if scenario.execution == "eager":
            clock, host_time = eager_step_time(records, syncs, per_op)
        if clock > busy:
            records.append(OpRecord("host-bound idle", "idle", "host", "host", clock - busy, 0.0, 0.0,
                                    "host", start_s=busy, stream="idle"))
        step_time = clock
        flops_per_step = sum(r.flops for r in records)
        if mode == "train":
            loss = workload.loss_op
            model_flops = workload.forward_flops + workload.backward_flops + (3 * loss.flops if loss else 0.0)
        else:
            model_flops = workload.forward_flops
        memory = footprint(workload, device, cal, mode="train" if mode == "train" else "inference",
                           optimizer=optimizer, recompute=scenario.recompute)
        samples = workload.batch
        tokens = workload.batch * (1 if workload.meta.get("phase") == "decode" else workload.seq)
        # "amp": torch.autocast over fp32 weights (GEMMs in `dtype`); "cast": the whole model in `dtype`
        extra = {"backend": scenario.backend, "precision": "amp" if workload.amp else "cast", **backend_info}
        result = Result(
            model=workload.name, hardware=device.id, engine=self.name, mode=mode, dtype=workload.dtype.value,
            batch=workload.batch, seq=workload.seq, step_time_s=step_time, samples_per_step=samples,
            tokens_per_step=tokens, params=workload.params, flops_per_step=flops_per_step,
            model_flops_per_step=model_flops, peak_flop_per_s=device.peak_flop_per_s(DType(compute_dtype)),
            memory=memory, breakdown=tuple(records), unmodelled=tuple(unmodelled), host_time_s=host_time,
            provenance={
                "engine": self.name, "perfforge_version": __version__, "calibration": cal.source,
                "device_sources": dict(device.sources), "inputs_sha256": _digest(workload, device.id, scenario),
                "backend": scenario.backend,
            },
            extra=extra,
        )
        # a scenario sets loader_workers for training only (validated), so other modes pass through
        return apply_input_bound(result, scenario.loader_workers, scenario.loader_rate, workload.batch,
                                 cal.loader_samples_per_s_per_worker)


def eager_step_time(records: list[OpRecord], syncs: list[bool], per_op_s: float) -> tuple[float, float]:
    """(step time, host issue time) of an eager step whose ops the CPU issues at ``per_op_s`` each.

    The CPU runs ahead of the GPU while the GPU is the bottleneck; when kernels are shorter than their issue
    time the GPU idles, so a stretch of ops takes max(GPU time, issue time). An op that reads a result back to
    Python (``syncs``: ``.item()``, a boolean-mask ``nonzero``) drains the queue: the CPU waits for the GPU and
    the next stretch starts from an empty queue. Without such ops the step is max(GPU, host) as a whole. Only
    forward ops are charged: the backward is issued by autograd's C++ engine without the Python-level dispatch
    that dominates the per-op host cost."""
    step = host = gpu = issue = 0.0
    for rec, sync in zip(records, syncs):
        gpu += rec.time_s
        if rec.phase in ("forward", "recompute"):
            issue += per_op_s
        if sync:
            step, host, gpu, issue = step + max(gpu, issue), host + issue, 0.0, 0.0
    return step + max(gpu, issue), host + issue


def _digest(workload: Workload, device_id: str, scenario: Scenario) -> str:
    payload = json.dumps({"workload": workload.name, "batch": workload.batch, "seq": workload.seq,
                          "dtype": workload.dtype.value, "ops": len(workload.ops), "device": device_id,
                          "scenario": scenario.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
