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


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """Wall time covered by at least one interval: collectives running at once (several streams) count once."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


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


def layer_params(workload: Workload) -> dict[str, int]:
    """Layer -> its parameter count (what ZeRO-3 all-gathers before the layer runs)."""
    out: dict[str, int] = {}
    for op in workload.ops:
        out[op.layer] = out.get(op.layer, 0) + op.params
    return out


def zero3_segment(rec: OpRecord) -> tuple[str, str]:
    """The (pass, layer) a record runs in: ZeRO-3 gathers a layer's parameters once per pass."""
    return ("forward" if rec.phase in ("forward", "recompute") else "backward", rec.layer)


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


def schedule_collectives(jobs: list[tuple[float, float]], *, streams: int = 1,
                         shared_links: bool = True) -> list[tuple[float, float]]:
    """(start, end) of collectives given as (ready time, stand-alone duration), in launch order.

    At most ``streams`` run at once (NCCL communicators/streams); the rest queue in order. With
    ``shared_links`` concurrent collectives share the same links fairly, so each progresses at 1/k of its
    stand-alone speed while k run (a fluid processor-sharing model); without it they do not slow each other
    (a congestion-unaware network, as ASTRA-sim's analytical backend).
    """
    if streams < 1:
        raise ValueError("streams must be >= 1")
    n = len(jobs)
    start: list[float | None] = [None] * n
    end: list[float | None] = [None] * n
    remaining = [d for _, d in jobs]
    active: list[int] = []
    nxt, clock = 0, 0.0
    while nxt < n or active:
        while nxt < n and len(active) < streams and jobs[nxt][0] <= clock:
            start[nxt] = clock
            active.append(nxt)
            nxt += 1
        if not active:
            clock = jobs[nxt][0]
            continue
        rate = 1.0 / len(active) if shared_links else 1.0
        finish_in = min(remaining[i] for i in active) / rate
        arrival_in = (jobs[nxt][0] - clock) if (nxt < n and len(active) < streams) else float("inf")
        step = min(finish_in, arrival_in)
        for i in active:
            remaining[i] -= step * rate
        clock += step
        for i in [i for i in active if remaining[i] <= 1e-15]:
            end[i] = clock
            active.remove(i)
    return [(s, e) for s, e in zip(start, end)]  # type: ignore[misc]


def _run_optimizer(optimizer: list[OpRecord], start: float, optimizer_s: float | None,
                   compute: list[OpRecord]) -> float:
    """Append the optimizer update to the compute stream from ``start`` (taking ``optimizer_s`` when this rank
    updates only a shard); returns when it ends."""
    for rec in optimizer:
        t = rec.time_s if optimizer_s is None else optimizer_s
        compute.append(OpRecord(rec.name, rec.kind, rec.layer, rec.phase, t, rec.flops, rec.bytes, rec.bound,
                                start_s=start))
        start += t
    return start


def simulate_dp_step(records: list[OpRecord], producers: dict[str, int], *, grad_bytes: int, topology: Topology,
                     algorithms: dict[str, str] | None, efficiency: float, overlap: bool = True, streams: int = 1,
                     shared_links: bool = True, launch_s: float = 0.0, zero: int = 0,
                     gather_bytes: float = 0.0, optimizer_s: float | None = None) -> DPTimeline:
    """Place bucket all-reduces against a single-device compute timeline (``records`` in issue order).

    ``zero`` 1 or 2 (ZeRO, Rajbhandari et al. 2020; DeepSpeed stages 1-2): each bucket is reduce-scattered
    instead (the same buckets, overlapped with backward in the same way), the optimizer updates this rank's shard
    (``optimizer_s``, its time), and the updated parameters, ``gather_bytes`` in all, are all-gathered after it,
    before the next forward: on the critical path."""
    if zero not in (0, 1, 2):
        raise ValueError("the data-parallel timeline covers ZeRO stages 0-2")
    reduce = "reduce_scatter" if zero else "all_reduce"
    compute: list[OpRecord] = []
    comm: list[OpRecord] = []
    clock = comm_free = 0.0
    optimizer = [r for r in records if r.phase == "optimizer"]
    body = [r for r in records if r.phase != "optimizer"]
    # one device has no peer to reduce with: no buckets, no collectives (DDP is not even constructed)
    launches = dict(bucket_plan(body, producers, grad_bytes)) if topology.npus > 1 else {}
    ready: list[float] = []  # when each bucket's last gradient exists
    for i, rec in enumerate(body):
        compute.append(OpRecord(rec.name, rec.kind, rec.layer, rec.phase, rec.time_s, rec.flops, rec.bytes,
                                rec.bound, start_s=clock))
        clock += rec.time_s
        if i in launches:
            ready.append(clock)
    if not overlap:  # every bucket waits for the end of backward
        ready = [clock] * len(ready)
    sizes = [launches[i] for i in sorted(launches)]
    jobs = [(r, collective_time(reduce, size, topology, algorithms=algorithms, efficiency=efficiency,
                                    launch_s=launch_s), size)
            for r, size in zip(ready, sizes)]
    placed = schedule_collectives([(r, d) for r, d, _ in jobs], streams=streams, shared_links=shared_links)
    label = "reducescatter" if zero else "allreduce"
    for k, ((_, _, size), (begin, finish)) in enumerate(zip(jobs, placed)):
        comm.append(OpRecord(f"{label}.bucket{k}", reduce, "comm", "communication", finish - begin, 0.0,
                             size, "network", start_s=begin, stream="comm" if streams == 1 else f"comm{k % streams}"))
        comm_free = max(comm_free, finish)
    nbuckets = len(jobs)
    backward_end = clock
    step = _run_optimizer(optimizer, max(backward_end, comm_free), optimizer_s, compute)
    if zero and topology.npus > 1:
        gather = collective_time("all_gather", gather_bytes, topology, algorithms=algorithms, efficiency=efficiency,
                                 launch_s=launch_s)
        comm.append(OpRecord("allgather.parameters", "all_gather", "comm", "communication", gather, 0.0,
                             gather_bytes, "network", start_s=step, stream="comm"))
        step += gather
    compute_s = sum(r.time_s for r in compute)
    comm_s = busy_time([(r.start_s, r.start_s + r.time_s) for r in comm])
    return DPTimeline(tuple(compute + comm), step, compute_s, comm_s, step - compute_s, nbuckets)


def simulate_zero3_step(records: list[OpRecord], producers: dict[str, int], layer_params: dict[str, int], *,
                        grad_bytes: int, gather_bytes: int, topology: Topology, algorithms: dict[str, str] | None,
                        efficiency: float, launch_s: float = 0.0, optimizer_s: float | None = None,
                        overlap: bool = True) -> DPTimeline:
    """ZeRO-3 / FSDP data parallelism (Rajbhandari et al. 2020; PyTorch FSDP with FULL_SHARD): each layer's
    parameters (``layer_params``, ``gather_bytes`` each) are all-gathered before its forward and again before its
    backward, prefetched one layer ahead (a layer's gather is issued once the previous layer has started computing,
    so it goes ahead of that layer's gradient reduce-scatters, as FSDP's backward prefetch does), and its gradients
    are reduce-scattered in the same buckets DDP would use. One communication stream, served in the order
    collectives are issued; a layer cannot start before its parameters have arrived, so gathers longer than a
    layer's compute show as exposed communication. Without ``overlap`` the reduce-scatters wait for the end of
    backward (the gathers are still prefetched: a layer needs its parameters to run at all)."""
    compute: list[OpRecord] = []
    comm: list[OpRecord] = []
    optimizer = [r for r in records if r.phase == "optimizer"]
    body = [r for r in records if r.phase != "optimizer"]
    buckets = dict(bucket_plan(body, producers, grad_bytes)) if topology.npus > 1 else {}
    clock = comm_free = 0.0
    current: tuple[str, str] | None = None
    gathered: set[tuple[str, str]] = set()

    def place(name: str, kind: str, size: float, ready: float) -> float:
        nonlocal comm_free
        begin = max(comm_free, ready)
        end = begin + collective_time(kind, size, topology, algorithms=algorithms, efficiency=efficiency,
                                      launch_s=launch_s)
        comm.append(OpRecord(name, kind, "comm", "communication", end - begin, 0.0, size, "network", start_s=begin,
                             stream="comm"))
        comm_free = end
        return end

    # the segments in program order, each with the layer whose parameters it needs (ZeRO-3 gathers each once)
    segments: list[tuple[str, str]] = []
    for rec in body:
        if not segments or zero3_segment(rec) != segments[-1]:
            segments.append(zero3_segment(rec))
    arrival: dict[tuple[str, str], float] = {}

    def gather(key: tuple[str, str], ready: float) -> None:
        """Queue ``key``'s gather when it is issued; the stream serves collectives in the order they are issued."""
        if topology.npus > 1 and layer_params.get(key[1]) and key not in gathered:
            gathered.add(key)
            arrival[key] = place(f"allgather.{key[0]}.{key[1]}", "all_gather", layer_params[key[1]] * gather_bytes,
                                 ready)

    seg = -1
    for i, rec in enumerate(body):
        key = zero3_segment(rec)
        if key != current:
            seg += 1
            gather(key, clock)   # the first segment's own gather (the others were prefetched)
            clock = max(clock, arrival.get(key, 0.0))
            current = key
            if seg + 1 < len(segments):   # prefetch: the next segment's gather is issued as this one starts,
                gather(segments[seg + 1], clock)   # ahead of this segment's reduce-scatters
        compute.append(OpRecord(rec.name, rec.kind, rec.layer, rec.phase, rec.time_s, rec.flops, rec.bytes,
                                rec.bound, start_s=clock))
        clock += rec.time_s
        if i in buckets and overlap:
            place(f"reducescatter.bucket{len([c for c in comm if c.kind == 'reduce_scatter'])}", "reduce_scatter",
                  buckets[i], clock)
    if not overlap:   # every bucket waits for the end of backward
        for k, i in enumerate(sorted(buckets)):
            place(f"reducescatter.bucket{k}", "reduce_scatter", buckets[i], clock)
    step = _run_optimizer(optimizer, max(clock, comm_free), optimizer_s, compute)
    compute_s = sum(r.time_s for r in compute)
    comm_s = busy_time([(r.start_s, r.start_s + r.time_s) for r in comm])
    return DPTimeline(tuple(compute + comm), step, compute_s, comm_s, step - compute_s, len(buckets))
