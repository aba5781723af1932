"""Reproduce ASTRA-sim's congestion-unaware analytical backend for DATA-parallel text workloads.

Semantics (matched against four outputs of the real ASTRA-sim, commit c459ab6, in
``data/ground_truth/astra-sim/reference_outputs.yaml``; all within 0.05%):

- the Chakra text converter reads compute columns as microseconds (``compute_unit="us"``, ASTRA-sim issue
  #207); ASTRA-sim 1.0 read them as nanoseconds (``"ns"``);
- forward computes run in layer order; the backward visits layers in reverse, each running its weight-
  gradient compute, then issuing its weight-gradient collective (asynchronously), then its input-gradient
  compute, which the first layer skips (nothing consumes it);
- with ``active-chunks-per-dimension: 1`` the network carries one chunk at a time: collectives queue and
  each runs its ``preferred-dataset-splits`` chunks back to back;
- a ring all-reduce chunk is n-1 reduce-scatter steps then n-1 all-gather steps of ``chunk/n`` bytes; each
  step costs hops x link latency + bytes / bandwidth + endpoint delay, and a reduce step adds
  3 x floor(bytes / local-mem-bw) for reading two operands and writing the sum; a Switch is two hops;
- ``finish`` is when the last compute and the last collective are done; ``exposed communication`` is finish
  minus the total compute time, as ASTRA-sim prints it.
Multi-dimensional networks compose hierarchically (reduce-scatter inward-out, all-gather back) and the
``direct`` algorithm is modelled; neither is validated against ASTRA-sim outputs yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from perfforge.core.errors import ConfigError
from perfforge.distributed.astrasim.inputs import NetworkDim, SystemConfig, TextWorkload

HOPS = {"Ring": 1, "FullyConnected": 1, "Switch": 2}
REDUCE_MEMORY_ACCESSES = 3  # two operand reads and one write per reduced byte


@dataclass(frozen=True, slots=True)
class CompatResult:
    finish_ns: float
    exposed_comm_ns: float
    compute_ns: float
    comm_ns: float
    collectives: int
    npus: int


def _step_ns(dim: NetworkDim, size: float, system: SystemConfig, reduce: bool) -> float:
    t = HOPS[dim.topology] * dim.latency_ns + size / dim.bytes_per_ns + system.endpoint_delay_ns
    if reduce and system.local_mem_bw > 0:
        t += REDUCE_MEMORY_ACCESSES * (size // system.local_mem_bw)
    return t


def _phase_ns(dim: NetworkDim, algorithm: str, data: float, system: SystemConfig, reduce: bool) -> float:
    """Reduce-scatter (``reduce=True``) or all-gather of ``data`` bytes per NPU over one dimension."""
    n = dim.npus
    if n == 1:
        return 0.0
    piece = data / n
    if algorithm == "ring":
        return (n - 1) * _step_ns(dim, piece, system, reduce)
    # direct: every peer's piece at once; a Switch port serialises them, dedicated links do not
    serial = piece * (n - 1) if dim.topology == "Switch" else piece
    return _step_ns(dim, serial, system, reduce)


def all_reduce_ns(size: float, dims: tuple[NetworkDim, ...], system: SystemConfig) -> float:
    if size <= 0:
        return 0.0
    algos = system.all_reduce + (system.all_reduce[-1],) * (len(dims) - len(system.all_reduce))
    chunk = size / system.splits
    per_chunk = 0.0
    part = chunk
    for dim, algo in zip(dims, algos):  # reduce-scatter inward-out
        per_chunk += _phase_ns(dim, algo, part, system, reduce=True)
        part /= dim.npus
    part = chunk
    parts = []
    for dim in dims:
        parts.append(part)
        part /= dim.npus
    for dim, algo, data in reversed(list(zip(dims, algos, parts))):  # all-gather back out
        per_chunk += _phase_ns(dim, algo, data, system, reduce=False)
    return system.splits * per_chunk


def simulate(workload: TextWorkload, dims: tuple[NetworkDim, ...], system: SystemConfig, *,
             compute_unit: Literal["us", "ns"] = "us") -> CompatResult:
    if compute_unit not in ("us", "ns"):
        raise ConfigError(f"compute unit '{compute_unit}' (allowed: us, ns)")
    scale = 1000.0 if compute_unit == "us" else 1.0
    for layer in workload.layers:
        for kind in (layer.fwd_comm_type, layer.ig_comm_type):
            if kind != "NONE":
                raise ConfigError(f"layer {layer.name}: forward/input-gradient collectives are not supported yet "
                                  "in DATA workloads (weight-gradient collectives are)")
        if layer.wg_comm_type not in ("NONE", "ALLREDUCE"):
            raise ConfigError(f"layer {layer.name}: weight-gradient {layer.wg_comm_type} is not supported yet "
                              "(supported: ALLREDUCE)")
    clock = sum(layer.fwd_compute * scale for layer in workload.layers)
    comm_free = comm_total = 0.0
    collectives = 0
    for index in range(len(workload.layers) - 1, -1, -1):
        layer = workload.layers[index]
        clock += layer.wg_compute * scale
        if layer.wg_comm_type == "ALLREDUCE" and layer.wg_comm_bytes:
            t = all_reduce_ns(layer.wg_comm_bytes, dims, system)
            comm_free = max(clock, comm_free) + t
            comm_total += t
            collectives += 1
        if index > 0:
            clock += layer.ig_compute * scale
    finish = max(clock, comm_free)
    npus = 1
    for d in dims:
        npus *= d.npus
    return CompatResult(finish, finish - clock, clock, comm_total, collectives, npus)
