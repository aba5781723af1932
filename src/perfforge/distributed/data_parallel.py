"""Data-parallel training step: backward compute overlapped with bucketed gradient all-reduces.

One device's compute stream runs forward, loss, backward (analytical per-op times); gradients are grouped
into buckets in the order backward produces them, as PyTorch DDP does (first bucket 1 MiB, then 25 MiB:
``torch.nn.parallel.DistributedDataParallel(bucket_cap_mb=25)`` and ``dist._DEFAULT_FIRST_BUCKET_BYTES``);
a bucket's all-reduce starts on the communication stream once its last gradient exists and the stream is
free; the optimizer runs after the last all-reduce. Data parallelism is symmetric: every device runs the
same timeline, so the cost of a step does not grow with the device count (only the collective times do).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfforge.distributed.collectives import collective_time
from perfforge.distributed.topology import Topology
from perfforge.result import OpRecord
from perfforge.workload.graph import Workload
from perfforge.workload.op import Phase

MIB = 2**20
FIRST_BUCKET_BYTES = 1 * MIB
BUCKET_BYTES = 25 * MIB


@dataclass(frozen=True)
class DPTimeline:
    records: tuple[OpRecord, ...]
    step_time_s: float
    compute_s: float
    comm_s: float
    exposed_comm_s: float
    buckets: int


def gradient_producers(workload: Workload) -> dict[str, int]:
    """Backward op name -> parameters whose gradient it completes (a wgrad, or a norm's single backward)."""
    params = {op.name: op.params for op in workload.ops if op.params}
    out: dict[str, int] = {}
    for op in workload.backward:
        base = op.name.rsplit(".", 1)[0]
        if base in params and (op.phase is Phase.BACKWARD_WEIGHT or op.name.endswith(".bwd")):
            out[op.name] = params.pop(base)
    return out


def bucket_plan(records: list[OpRecord], producers: dict[str, int], grad_bytes: int) -> list[tuple[int, float]]:
    """DDP buckets as (index of the record that completes the bucket, bytes), in launch order."""
    plan: list[tuple[int, float]] = []
    bucket, cap, last = 0.0, float(FIRST_BUCKET_BYTES), -1
    for i, rec in enumerate(records):
        grads = producers.get(rec.name, 0)
        if not grads:
            continue
        bucket += grads * grad_bytes
        last = i
        if bucket >= cap:
            plan.append((i, bucket))
            bucket, cap = 0.0, float(BUCKET_BYTES)
    if bucket:
        plan.append((last, bucket))
    return plan


def simulate_dp_step(records: list[OpRecord], producers: dict[str, int], *, grad_bytes: int, topology: Topology,
                     algorithms: dict[str, str] | None, efficiency: float, overlap: bool = True) -> DPTimeline:
    """Place bucket all-reduces against a single-device compute timeline (``records`` in issue order)."""
    compute: list[OpRecord] = []
    comm: list[OpRecord] = []
    clock = comm_free = 0.0
    nbuckets = 0
    optimizer = [r for r in records if r.phase == "optimizer"]
    body = [r for r in records if r.phase != "optimizer"]
    launches = dict(bucket_plan(body, producers, grad_bytes))
    pending: list[float] = []  # buckets that wait for the end of backward (no overlap)

    def launch(size: float, ready: float) -> None:
        nonlocal comm_free, nbuckets
        t = collective_time("all_reduce", size, topology, algorithms=algorithms, efficiency=efficiency)
        start = max(ready, comm_free)
        comm.append(OpRecord(f"allreduce.bucket{nbuckets}", "all_reduce", "comm", "communication", t, 0.0, size,
                             "network", start_s=start, stream="comm"))
        comm_free = start + t
        nbuckets += 1

    for i, rec in enumerate(body):
        compute.append(OpRecord(rec.name, rec.kind, rec.layer, rec.phase, rec.time_s, rec.flops, rec.bytes,
                                rec.bound, start_s=clock))
        clock += rec.time_s
        if i in launches:
            if overlap:
                launch(launches[i], clock)
            else:
                pending.append(launches[i])
    for size in pending:
        launch(size, clock)
    backward_end = clock
    start_opt = max(backward_end, comm_free)
    for rec in optimizer:
        compute.append(OpRecord(rec.name, rec.kind, rec.layer, rec.phase, rec.time_s, rec.flops, rec.bytes,
                                rec.bound, start_s=start_opt))
        start_opt += rec.time_s
    step = start_opt
    compute_s = sum(r.time_s for r in compute)
    comm_s = sum(r.time_s for r in comm)
    return DPTimeline(tuple(compute + comm), step, compute_s, comm_s, step - compute_s, nbuckets)
