"""Timing primitives: ``time_callable`` (CUDA events or wall clock) and the ``Case`` type.

Standard library at import time; torch is imported only when timing on a CUDA device.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from perfforge.profiling.records import make_key

DEFAULT_FLUSH_BYTES = 256 * 1024 * 1024
# Launch guard (nvbench's "blocking kernel" idea, done with a timed spin kernel): the GPU spins while the host
# enqueues every timed repeat, so a kernel shorter than its host launch cost is timed back to back with the
# previous one instead of with the host's launch gap inside its event pair.
GUARD_MIN_S = 1e-3  # the shortest spin
GUARD_MAX_S = 0.5  # the longest spin: beyond it the host is not the reason the queue did not fill
GUARD_HOST_MARGIN = 2.0  # spin this many times the host's measured enqueue time
GUARD_PER_REPEAT_S = 20e-6  # host cost of a repeat's two events and flush, on top of fn's
GUARD_ATTEMPTS = 3
_SLEEP_CYCLES_PER_S: dict[str, float] = {}


@dataclass(frozen=True)
class TimingPlan:
    """How hard to time one case: warmup calls, target repeats and a per-case time cap."""

    warmup: int = 3
    repeats: int = 10
    max_time_s: float = 1.0
    min_repeats: int = 3


@dataclass(frozen=True)
class TimingResult:
    median_s: float
    p10_s: float
    p90_s: float
    repeats: int
    warmup: int
    timer: str
    l2_flush: bool
    samples: tuple[float, ...] = ()
    guard: str = "off"  # "held": every repeat was queued before the GPU reached it; "released_early"; "off"


@dataclass(frozen=True)
class Case:
    """One thing to measure.

    ``setup(device)`` allocates inputs / builds the model and returns ``(fn, extra)``: the
    zero-argument callable to time and a dict of facts recorded alongside (may be empty).
    """

    kind: str  # "kernel" | "model"
    group: str  # "ceilings" | "models" | "kernels"
    op: str
    dtype: str
    params: Mapping[str, Any]
    setup: Callable[[Any], tuple[Callable[[], object], dict[str, Any]]]
    flop: float | None = None
    bytes: float | None = None
    samples: int | None = None  # samples per call, for throughput_per_s
    l2_flush: bool = False
    plan: TimingPlan | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return make_key(self.kind, self.op, self.dtype, self.params)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        raise ValueError("no values")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _plan_repeats(est_s: float, repeats: int, min_repeats: int, max_time_s: float,
                  min_time_s: float) -> int:
    n = repeats
    if min_time_s > 0 and est_s > 0 and est_s * n < min_time_s:
        n = min(repeats * 10, math.ceil(min_time_s / est_s))
    if est_s > 0 and max_time_s > 0:
        n = min(n, max(min_repeats, int(max_time_s / est_s)))
    return max(1, min(n, max(repeats * 10, 1)))


def _summarise(samples: list[float], warmup: int, timer: str, flush: bool, guard: str = "off") -> TimingResult:
    return TimingResult(
        median_s=statistics.median(samples),
        p10_s=percentile(samples, 10),
        p90_s=percentile(samples, 90),
        repeats=len(samples),
        warmup=warmup,
        timer=timer,
        l2_flush=flush,
        samples=tuple(samples),
        guard=guard,
    )


def time_callable(
    fn: Callable[[], object],
    *,
    device: Any = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    l2_flush: bool = False,
    min_time_s: float = 0.0,
    max_time_s: float = 1.0,
    min_repeats: int = 3,
    flush_bytes: int | None = None,
    launch_guard: bool = False,
) -> TimingResult:
    """Time ``fn``: median / p10 / p90 seconds per call.

    CUDA: one event pair per repeat, all enqueued then one synchronize; with ``l2_flush`` a
    buffer (``flush_bytes``, default 256 MiB; pass ~2x L2) is overwritten before each repeat,
    outside the timed region. CPU: ``time.perf_counter`` around each call, no flush.
    Adaptive: the warmup calls estimate the per-call time; repeats are cut so the timed part
    stays under ``max_time_s`` (never below ``min_repeats``), and raised up to 10x when the
    total would be under ``min_time_s``.

    ``launch_guard`` (CUDA only; for single kernels, not whole steps whose host time is part of what is
    measured): a spin kernel holds the GPU while the host enqueues all repeats, sized from the host's measured
    enqueue time, so each event pair times the kernel and not the host's launch gap. Whether the queue really
    filled is checked (the spin must still be running once everything is enqueued); if not, the spin is
    lengthened and the repeats halved, up to three tries. ``TimingResult.guard`` says how it went.
    """
    dev_type = getattr(device, "type", str(device).split(":")[0])
    warmup = max(1, warmup)
    if dev_type == "cuda":
        return _time_cuda(fn, device, warmup, repeats, l2_flush, min_time_s, max_time_s,
                          min_repeats, flush_bytes or DEFAULT_FLUSH_BYTES, launch_guard)
    return _time_wall(fn, warmup, repeats, min_time_s, max_time_s, min_repeats)


def _time_wall(fn: Callable[[], object], warmup: int, repeats: int, min_time_s: float,
               max_time_s: float, min_repeats: int) -> TimingResult:
    t0 = time.perf_counter()
    fn()  # the first call may compile / allocate: it estimates only when it is the sole warmup
    est = time.perf_counter() - t0
    if warmup > 1:
        t0 = time.perf_counter()
        for _ in range(warmup - 1):
            fn()
        est = (time.perf_counter() - t0) / (warmup - 1)
    n = _plan_repeats(est, repeats, min_repeats, max_time_s, min_time_s)
    samples: list[float] = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if i + 1 >= min_repeats and time.perf_counter() - start > 2 * max_time_s > 0:
            break
    return _summarise(samples, warmup, "wall", False)


def _time_cuda(fn: Callable[[], object], device: Any, warmup: int, repeats: int, flush: bool,
               min_time_s: float, max_time_s: float, min_repeats: int,
               flush_bytes: int, launch_guard: bool = False) -> TimingResult:
    import torch

    buf = torch.empty(max(1, flush_bytes // 4), dtype=torch.int32, device=device) if flush else None
    fn()
    torch.cuda.synchronize(device)
    if warmup > 1:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        host0 = time.perf_counter()
        for _ in range(warmup - 1):
            fn()
        host_per_call = (time.perf_counter() - host0) / (warmup - 1)  # enqueue cost, read before the sync
        e.record()
        torch.cuda.synchronize(device)
        est = s.elapsed_time(e) / 1e3 / (warmup - 1)
    else:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        est = host_per_call = time.perf_counter() - t0
    n = _plan_repeats(est, repeats, min_repeats, max_time_s, min_time_s)
    guard = "off"
    hold_s = GUARD_MIN_S + n * (GUARD_HOST_MARGIN * host_per_call + GUARD_PER_REPEAT_S)
    for attempt in range(GUARD_ATTEMPTS if launch_guard else 1):
        released = None
        if launch_guard:
            torch.cuda._sleep(int(min(hold_s, GUARD_MAX_S) * _sleep_cycles_per_s(torch, device)))
            released = torch.cuda.Event()
            released.record()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for i in range(n):
            if buf is not None:
                buf.fill_(i)  # evict inputs from L2; enqueued before the start event
            starts[i].record()
            fn()
            ends[i].record()
        held = released is not None and not released.query()  # still spinning: the whole queue was filled
        torch.cuda.synchronize(device)
        if released is not None:
            guard = "held" if held else "released_early"
            if held:
                break
            # the host outran the spin (a slow or busy host, or a full launch queue): spin longer, queue fewer
            if attempt + 1 < GUARD_ATTEMPTS:
                hold_s, n = hold_s * 4, max(min_repeats, n // 2)
    samples = [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends, strict=True)]
    del buf
    return _summarise(samples, warmup, "cuda_event", flush, guard)


def _sleep_cycles_per_s(torch: Any, device: Any) -> float:
    """Clock cycles per second of ``torch.cuda._sleep``'s spin on ``device``, timed once per device."""
    key = str(device)
    if key not in _SLEEP_CYCLES_PER_S:
        cycles = 20_000_000
        torch.cuda._sleep(1000)  # load the spin kernel
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.cuda._sleep(cycles)
        e.record()
        torch.cuda.synchronize(device)
        _SLEEP_CYCLES_PER_S[key] = cycles / max(s.elapsed_time(e) / 1e3, 1e-6)
    return _SLEEP_CYCLES_PER_S[key]


def cuda_kernel_us(prof: Any, exclude: str | None = None) -> float:
    """Sum of the CUDA kernels' own durations in a finished ``torch.profiler.profile`` (microseconds), leaving out
    kernels whose name contains ``exclude`` (an L2 flush's fill kernels, say)."""
    return float(sum(e.time_range.elapsed_us() for e in prof.events() if str(e.device_type).endswith("CUDA")
                     and (exclude is None or exclude not in e.name)))


def kernel_time_s(fn: Callable[[], object], *, repeats: int = 5, calls: int = 1) -> float:
    """GPU time of one call as the sum of its kernels' own durations (PyTorch profiler, no launch gaps):
    the median over ``repeats`` profiles of ``calls`` calls each, divided by ``calls``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    totals = []
    for _ in range(repeats):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
        us = cuda_kernel_us(prof)
        if us <= 0:
            raise RuntimeError("the profiler reported no CUDA kernels")
        totals.append(us * 1e-6 / calls)
    return statistics.median(totals)
