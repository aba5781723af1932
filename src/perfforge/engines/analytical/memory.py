"""Per-device memory footprint and the does-it-fit verdict."""

from __future__ import annotations

from perfforge.engines.analytical.calibration import Calibration
from perfforge.result import MemoryFootprint
from perfforge.system.device import DeviceSpec
from perfforge.workload.graph import Workload
from perfforge.workload.optimizer import OptimizerSpec, optimizer_state_bytes_per_param


def transient_activation_bytes(workload: Workload) -> float:
    """Inference keeps no activations for a backward: the peak is the largest op's live inputs and outputs."""
    peak = 0.0
    for op in workload.ops:
        live = op.bytes_read - op.param_bytes + op.bytes_written
        peak = max(peak, live)
    return peak


def footprint(workload: Workload, device: DeviceSpec, cal: Calibration, *, mode: str,
              optimizer: OptimizerSpec | None, recompute: bool) -> MemoryFootprint:
    params = workload.params
    weights = params * workload.param_dtype.bytes  # fp32 under autocast (its low-precision copies are activations)
    gradients = optimizer_states = kv = 0.0
    if mode == "train":
        if optimizer is None:
            raise ValueError("training needs an optimizer")
        gradients = weights
        optimizer_states = params * optimizer_state_bytes_per_param(optimizer, workload.param_dtype)
        activations = workload.activation_bytes_recompute() if recompute else workload.activation_bytes
    else:
        activations = transient_activation_bytes(workload)
        kv = workload.kv_cache_bytes()
    capacity = device.memory_bytes
    return MemoryFootprint(
        weights=weights, gradients=gradients, optimizer_states=optimizer_states, activations=activations,
        kv_cache=kv, overhead=cal.framework_overhead_bytes, capacity=capacity,
        usable=capacity * cal.usable_memory_fraction,
    )
