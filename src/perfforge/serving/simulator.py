"""Discrete-event simulation of a cluster of LLM-serving replicas.

Events are request arrivals and pipeline-stage completions; at one timestamp arrivals are handled first, then
stage ends, then scheduling (Vidur's event order). Cost grows with events, not generated tokens: when a
replica starts a decode-only batch that nothing can change (no arrival can join, no request finishes, no
block runs out) the next iterations are fixed, so their times are computed at once, vectorised, and the
batch stands for all of them (``Batch.iterations``). ``fast_forward=False`` steps one iteration at a time;
the results are the same (tested).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from perfforge.core.errors import ConfigError
from perfforge.serving.batch import Batch
from perfforge.serving.batch_time import StageTimer
from perfforge.serving.requests import RequestSet
from perfforge.serving.schedulers import ReplicaScheduler
from perfforge.serving.state import RequestState

ROUTINGS = ("round_robin", "least_outstanding", "random")
MAX_FAST_FORWARD = 4096   # iterations per fast-forwarded run (bounds the vectors it builds)


@dataclass
class BatchLog:
    """One row per batch (a fast-forwarded run is one row with ``iterations`` > 1)."""

    replica: list[int] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    end: list[float] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    size: list[float] = field(default_factory=list)        # mean over the batch's iterations
    prefill_tokens: list[int] = field(default_factory=list)
    decode_tokens: list[float] = field(default_factory=list)   # per iteration (mean)
    kv_tokens: list[float] = field(default_factory=list)       # summed context read, all iterations
    blocks_used: list[int] = field(default_factory=list)       # at the end of the batch

    def add(self, replica: int, start: float, end: float, batch: Batch, kv_read: float, blocks: int,
            decoding: float | None = None) -> None:
        """``decoding``: mean requests decoding per iteration when it changed during a fast-forwarded run."""
        self.replica.append(replica)
        self.start.append(start)
        self.end.append(end)
        self.iterations.append(batch.iterations)
        if batch.decode_only:
            dec = float(len(batch.ids)) if decoding is None else decoding
            self.size.append(batch.size + batch.pad if batch.fixed_slots or decoding is None else dec)
            self.prefill_tokens.append(0)
            self.decode_tokens.append(dec)
        else:
            qs = batch.q.tolist()   # plain ints: cheaper than numpy reductions on small batches
            dec = qs.count(1)
            self.size.append(batch.size + batch.pad)
            self.prefill_tokens.append(sum(qs) - dec)
            self.decode_tokens.append(dec)
        self.kv_tokens.append(kv_read)
        self.blocks_used.append(blocks)


@dataclass
class SimulationOutput:
    state: RequestState
    log: BatchLog
    tbt_values: np.ndarray
    tbt_weights: np.ndarray
    preemptions: int
    num_blocks: int
    events: int


def replica_routes(n: int, replicas: int, routing: str, rng: np.random.Generator) -> np.ndarray | None:
    """Each request's replica when routing ignores the cluster's state (round robin, random), else None."""
    if routing == "round_robin":
        return np.arange(n) % replicas
    if routing == "random":
        return rng.integers(0, replicas, n)
    return None


class _Replica:
    def __init__(self, rid: int, scheduler: ReplicaScheduler, stages: int) -> None:
        self.id = rid
        self.sched = scheduler
        self.busy = [False] * stages
        self.waiting: list[deque[Batch]] = [deque() for _ in range(stages)]
        self.in_flight = 0
        self.outstanding = 0       # routed and not finished (least-outstanding routing)
        self.arrivals: list[float] = []   # this replica's future arrival times, when routing is known upfront
        self.next_arrival = 0      # index into ``arrivals``


class Simulator:
    def __init__(self, requests: RequestSet, timer: StageTimer, make_scheduler: Callable[[RequestState], ReplicaScheduler],
                 *, replicas: int = 1, routing: str = "round_robin", seed: int = 42,
                 fast_forward: bool = True) -> None:
        if replicas < 1:
            raise ConfigError(f"replicas must be >= 1, got {replicas}")
        if routing not in ROUTINGS:
            raise ConfigError(f"unknown routing '{routing}' (allowed: {', '.join(ROUTINGS)})")
        self.state = RequestState(requests)
        self.timer = timer
        self.stages = timer.pp
        self.replicas = [_Replica(i, make_scheduler(self.state), self.stages) for i in range(replicas)]
        self.routing = routing
        self.rng = np.random.default_rng(seed)
        self.fast_forward = fast_forward and self.stages == 1
        self.log = BatchLog()
        self._tbt_v: list[np.ndarray | float] = []   # gaps before tokens (s) ...
        self._tbt_w: list[np.ndarray | float] = []   # ... and how many tokens had each (scalar: all)
        self._heap: list[tuple[float, int, int, int, Batch]] = []
        self._seq = 0
        self._next_arrival = np.inf
        # Round-robin and random routing do not depend on the cluster's state, so every request's replica is
        # known upfront; each replica's fast-forward then only stops for its own arrivals.
        routes = replica_routes(self.state.n, replicas, routing, self.rng)
        self._routes: list[int] | None = None if routes is None else routes.tolist()
        if routes is not None:
            for rep in self.replicas:
                rep.arrivals = self.state.arrival[routes == rep.id].tolist()

    # ---- routing -----------------------------------------------------------------------------------------
    def _route(self, r: int) -> _Replica:
        if self._routes is not None:
            rep = self.replicas[self._routes[r]]
            rep.next_arrival += 1
        else:
            rep = min(self.replicas, key=lambda x: x.outstanding)
        self.state.replica[r] = rep.id
        rep.outstanding += 1
        rep.sched.queue.append(r)
        return rep

    # ---- the loop ----------------------------------------------------------------------------------------
    def run(self) -> SimulationOutput:
        arrivals = self.state.arrival.tolist()
        n = len(arrivals)
        ai = 0
        events = 0
        heap = self._heap
        while ai < n or heap:
            t_arr = arrivals[ai] if ai < n else np.inf
            t = min(t_arr, heap[0][0] if heap else np.inf)
            touched: dict[int, _Replica] = {}
            while ai < n and arrivals[ai] == t:
                rep = self._route(ai)
                touched[rep.id] = rep
                ai += 1
                events += 1
            self._next_arrival = arrivals[ai] if ai < n else np.inf
            while heap and heap[0][0] == t:
                _, _, rid, stage, batch = heapq.heappop(heap)
                rep = self.replicas[rid]
                self._stage_end(rep, stage, batch, t)
                touched[rid] = rep
                events += 1
            for rid in sorted(touched):
                self._dispatch(touched[rid], t)
        v = np.concatenate([np.atleast_1d(x) for x in self._tbt_v]) if self._tbt_v else np.zeros(0)
        w = np.concatenate([np.full(np.size(x), wt) for x, wt in zip(self._tbt_v, self._tbt_w)]) \
            if self._tbt_v else np.zeros(0)
        return SimulationOutput(self.state, self.log, v, w, sum(r.sched.preemptions for r in self.replicas),
                                self.replicas[0].sched.lim.num_blocks, events)

    def _dispatch(self, rep: _Replica, t: float) -> None:
        for stage in range(1, self.stages):
            if not rep.busy[stage] and rep.waiting[stage]:
                self._start(rep, stage, rep.waiting[stage].popleft(), t)
        if rep.in_flight < self.stages and not rep.busy[0]:
            batch = rep.sched.next_batch(t)
            if batch is None:
                return
            rep.in_flight += 1
            batch.scheduled_at = t
            if batch.decode_only:
                if self.fast_forward:
                    self._extend(rep, batch, t)
            else:                       # only prompts can be scheduled for the first time
                s = self.state
                sched_at = s.scheduled_at
                for r in batch.ids[~s.prefill_done[batch.ids]].tolist():
                    if sched_at[r] != sched_at[r]:   # NaN: first time
                        sched_at[r] = t
            self._start(rep, 0, batch, t)

    def _start(self, rep: _Replica, stage: int, batch: Batch, t: float) -> None:
        rep.busy[stage] = True
        if batch.iterations > 1:
            dt = batch.run_time
        else:
            q = batch.q if not batch.pad else np.concatenate([batch.q, np.ones(batch.pad, dtype=np.int64)])
            kv = batch.kv if not batch.pad else np.concatenate([batch.kv, np.full(batch.pad, batch.kv.mean())])
            dt = self.timer.batch_time(q, kv, stage)
        batch.stage_times.append(dt)
        self._seq += 1
        heapq.heappush(self._heap, (t + dt, self._seq, rep.id, stage, batch))

    def _stage_end(self, rep: _Replica, stage: int, batch: Batch, t: float) -> None:
        rep.busy[stage] = False
        if stage < self.stages - 1:
            rep.waiting[stage + 1].append(batch)
            return
        rep.in_flight -= 1
        self._finish(rep, batch, t)

    # ---- fast-forward ------------------------------------------------------------------------------------
    def _extend(self, rep: _Replica, batch: Batch, t0: float) -> None:
        """Make ``batch`` stand for as many identical decode iterations as nothing can interrupt. When no
        queued or waiting request could take a finishing request's place, the run continues through
        completions (the batch shrinks; static batching keeps the slots)."""
        sched = rep.sched
        blocked = sched.admission_blocked(batch)
        if blocked is None:
            return
        s = self.state
        ids = batch.ids
        p0 = s.processed[ids]
        rem = s.total[ids] - p0                # iterations until each request's last token
        through = (self._routes is not None and not sched.running
                   and (blocked is False or sched.keeps_finished_slots))
        k = min(int(rem.max() if through else rem.min()), MAX_FAST_FORWARD)
        if self._routes is not None:
            next_arrival = rep.arrivals[rep.next_arrival] if rep.next_arrival < len(rep.arrivals) else np.inf
        else:
            next_arrival = self._next_arrival   # any arrival may come here
        n = len(ids)
        if blocked is False and k > 32 and next_arrival < np.inf:
            # iterations only get longer as contexts grow and shorter as the batch shrinks; the first one,
            # at the smallest batch the run can reach, bounds how many fit before the next arrival
            d0 = self.timer.decode_one(1 if through else n + batch.pad, float(p0.sum()) / n + 1.0)
            k = min(k, int((next_arrival - t0) / d0) + 2)
        if k <= 1:
            return
        bs = sched.lim.block_size
        # blocks the run could need at most: one per request per block boundary crossed
        if sched.step_allocates and sched.free_blocks <= n * (k // bs + 2):
            res0 = s.reserved[ids]
            first = res0 * bs - p0 + 1            # iteration at which each request first needs a new block
            idx = first[:, None] + np.arange(0, k, bs)[None, :]
            idx = idx[(idx >= 1) & (idx < k) & (idx < rem[:, None])]
            cum = np.cumsum(np.bincount(idx, minlength=k))
            short = np.flatnonzero(sched.free_blocks - cum < 1)
            if len(short):
                k = int(short[0])
            if k <= 1:
                return
        j = np.arange(k)
        if through and not sched.keeps_finished_slots and int(rem.min()) < k:
            order = np.argsort(rem, kind="stable")
            gone = np.searchsorted(rem[order], j, side="right")     # requests finished before iteration j
            active = n - gone
            cum_p0 = np.concatenate(([0.0], np.cumsum(p0[order], dtype=np.float64)))
            ctx = (cum_p0[-1] - cum_p0[gone]) / active + 1.0 + j
            d = self.timer.shrinking_decode_iterations(active, ctx)
        else:
            if through and int(rem.min()) < k:       # static batching: slots stay, contexts of the active
                order = np.argsort(rem, kind="stable")
                gone = np.searchsorted(rem[order], j, side="right")
                active = n - gone
                cum_p0 = np.concatenate(([0.0], np.cumsum(p0[order], dtype=np.float64)))
                ctx = (cum_p0[-1] - cum_p0[gone]) / active + 1.0 + j
            else:
                active = None
                ctx = float(p0.sum()) / n + 1.0 + j
            d = self.timer.decode_iterations(n + batch.pad, ctx)
        ends = np.cumsum(d)
        if blocked is False:
            k = min(k, 1 + int(np.searchsorted(ends, next_arrival - t0, side="left")))
        if k <= 1:
            return
        batch.iterations = k
        batch.durations = d[:k]
        batch.run_time = float(ends[k - 1])
        batch.active = None if active is None else active[:k]
        batch.fixed_slots = sched.keeps_finished_slots

    # ---- batch completion --------------------------------------------------------------------------------
    def _finish(self, rep: _Replica, batch: Batch, t: float) -> None:
        if batch.decode_only:
            self._finish_decode(rep, batch, t)
        else:
            self._finish_mixed(rep, batch, t)

    def _finish_decode(self, rep: _Replica, batch: Batch, t: float) -> None:
        """Every request was past its prompt and got one token per iteration (the common case, kept lean)."""
        s = self.state
        sched = rep.sched
        ids = batch.ids
        n = len(ids)
        k = batch.iterations
        tbt_v, tbt_w = self._tbt_v, self._tbt_w
        before = s.processed[ids]
        if k > 1 and batch.active is not None:
            self._finish_shrinking(rep, batch, t, before)
            return
        proc = before + k
        s.processed[ids] = proc
        if k > 1:
            d = batch.durations
            first_end = batch.scheduled_at + d[0]
            tbt_v.append(first_end - s.last_token_at[ids])
            tbt_w.append(1.0)
            tbt_v.append(d[1:])
            tbt_w.append(float(n))
            kv_read = k * float(batch.kv.sum()) + n * k * (k - 1) / 2
            if sched.step_allocates:
                # blocks held for the last iteration: its tokens-before count overflowed what was held
                res = s.reserved[ids]
                need = -(-(proc - 1) // sched.lim.block_size)
                grow = need - res
                grow[grow < 0] = 0
                s.reserved[ids] = res + grow
                sched.free_blocks -= int(grow.sum())
        else:
            tbt_v.append(t - s.last_token_at[ids])
            tbt_w.append(1.0)
            kv_read = float(batch.kv.sum())
        s.last_token_at[ids] = t
        self._end(rep, batch, proc >= s.total[ids], t, kv_read)

    def _end(self, rep: _Replica, batch: Batch, done: np.ndarray, t: float, kv_read: float) -> None:
        """Requests that got their last token complete and free their blocks; the rest go back to the
        scheduler; the batch is logged."""
        sched, ids = rep.sched, batch.ids
        if np.count_nonzero(done):
            self._complete(rep, ids[done], t)
            sched.on_batch_end(batch, ids[~done])
        else:
            sched.on_batch_end(batch, ids)
        self.log.add(rep.id, batch.scheduled_at, t, batch, kv_read, sched.lim.num_blocks - sched.free_blocks)

    def _finish_shrinking(self, rep: _Replica, batch: Batch, t: float, before: np.ndarray) -> None:
        """A fast-forwarded run during which some requests finished: each got tokens until its last one."""
        s = self.state
        sched = rep.sched
        ids = batch.ids
        k, d, active = batch.iterations, batch.durations, batch.active
        ends = batch.scheduled_at + np.cumsum(d)
        rem = s.total[ids] - before
        steps = np.minimum(rem, k)
        proc = before + steps
        s.processed[ids] = proc
        self._tbt_v.append(ends[0] - s.last_token_at[ids])
        self._tbt_w.append(1.0)
        if k > 1:
            self._tbt_v.append(d[1:])
            self._tbt_w.append(active[1:].astype(np.float64))
        # context summed over the iterations each request took part in
        kv_read = float((steps * (batch.kv - 1) + steps * (steps + 1) / 2).sum())
        decoding = float(steps.sum()) / k
        done = rem <= k
        finished = ids[done]
        s.completed_at[finished] = ends[rem[done] - 1]
        s.last_token_at[finished] = ends[rem[done] - 1]
        left = ids[~done]
        s.last_token_at[left] = t
        if sched.step_allocates and len(left):
            res = s.reserved[left]
            need = -(-(proc[~done] - 1) // sched.lim.block_size)
            grow = need - res
            grow[grow < 0] = 0
            s.reserved[left] = res + grow
            sched.free_blocks -= int(grow.sum())
        release = sched.release
        for r in finished.tolist():
            release(r)
        rep.outstanding -= len(finished)
        sched.on_batch_end(batch, left)
        self.log.add(rep.id, batch.scheduled_at, t, batch, kv_read, sched.lim.num_blocks - sched.free_blocks,
                     decoding)

    def _complete(self, rep: _Replica, finished: np.ndarray, t: float) -> None:
        self.state.completed_at[finished] = t
        release = rep.sched.release
        for r in finished.tolist():
            release(r)
        rep.outstanding -= len(finished)

    def _finish_mixed(self, rep: _Replica, batch: Batch, t: float) -> None:
        s = self.state
        ids = batch.ids
        kv_read = float(batch.kv.sum())
        proc = s.processed[ids] + batch.q
        was_decode = s.prefill_done[ids]
        prefilled = ~was_decode & (proc == s.prefill[ids])
        if np.count_nonzero(prefilled):
            pf = ids[prefilled]
            s.prefill_done[pf] = True
            proc[prefilled] += 1              # the prefill's forward pass yields the first token
            first = s.first_token_at[pf]
            fresh = first != first            # NaN: the first time this request's prompt completed
            if np.count_nonzero(fresh):
                s.first_token_at[pf[fresh]] = t
        s.processed[ids] = proc
        out = ids[was_decode | prefilled]
        if len(out):
            prev = s.last_token_at[out]
            has = prev == prev
            if np.count_nonzero(has):
                self._tbt_v.append(t - prev[has])
                self._tbt_w.append(1.0)
            s.last_token_at[out] = t
        self._end(rep, batch, proc >= s.total[ids], t, kv_read)
