"""Simulate independent replicas in parallel worker processes.

With round-robin or random routing every request's replica is known before the simulation starts, and
replicas share nothing (each has its own scheduler, KV blocks and pipeline stages). Each replica can then be
simulated alone on its own requests, in its own process, and the outputs merged: per-request results are
those of the joint simulation (tested), and the wall time falls with the number of cores. Least-outstanding
routing depends on the cluster's state as it evolves and always runs jointly.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from perfforge.serving.batch_time import StageTimer
from perfforge.serving.requests import RequestSet
from perfforge.serving.schedulers import ReplicaScheduler
from perfforge.serving.simulator import BatchLog, SimulationOutput, Simulator, replica_routes
from perfforge.serving.state import RequestState

MakeScheduler = Callable[[RequestState], ReplicaScheduler]
# simulates one replica alone: (its requests, stage timer, scheduler factory, fast_forward) -> output
ReplicaRunner = Callable[[RequestSet, StageTimer, MakeScheduler, bool], SimulationOutput]


def python_replica(requests: RequestSet, timer: StageTimer, make_scheduler: MakeScheduler,
                   fast_forward: bool) -> SimulationOutput:
    """One replica with the reference (Python) simulator."""
    return Simulator(requests, timer, make_scheduler, replicas=1, fast_forward=fast_forward).run()

# Tokens and timings a replica's simulation writes into its requests' state, copied back on merge.
_STATE_FIELDS = ("prefill", "processed", "prefill_done", "reserved", "scheduled_at", "first_token_at",
                 "last_token_at", "completed_at", "restarts")
_LOG_FIELDS = ("start", "end", "iterations", "size", "prefill_tokens", "decode_tokens", "kv_tokens", "blocks_used")

# What forked workers read (set just before the pool starts; closures such as the scheduler factory are
# inherited by fork, never pickled).
_JOB: tuple[list[RequestSet | None], StageTimer, MakeScheduler, bool, ReplicaRunner] | None = None


def can_split(routing: str, replicas: int) -> bool:
    return replicas > 1 and routing in ("round_robin", "random")


def simulate_split(requests: RequestSet, timer: StageTimer, make_scheduler: MakeScheduler, *, replicas: int,
                   routing: str, seed: int, fast_forward: bool, jobs: int,
                   runner: ReplicaRunner = python_replica) -> SimulationOutput:
    """The joint simulation's output, computed one replica at a time (by ``runner``) in ``jobs`` processes."""
    global _JOB
    if not can_split(routing, replicas):
        raise ValueError(f"routing '{routing}' over {replicas} replica(s): replicas cannot run apart")
    routes = replica_routes(len(requests), replicas, routing, np.random.default_rng(seed))
    assert routes is not None
    groups = [np.flatnonzero(routes == r) for r in range(replicas)]
    subsets: list[RequestSet | None] = [
        RequestSet(requests.arrival_s[g], requests.prefill[g], requests.decode[g]) if len(g) else None
        for g in groups]
    _JOB = (subsets, timer, make_scheduler, fast_forward, runner)
    try:
        shares = [list(range(j, replicas, jobs)) for j in range(min(jobs, replicas))]
        if len(shares) == 1:
            results = _simulate(shares[0])
        else:
            with ProcessPoolExecutor(max_workers=len(shares), mp_context=mp.get_context("fork")) as pool:
                results = [pair for part in pool.map(_simulate, shares) for pair in part]
    finally:
        _JOB = None
    return _merge(requests, groups, dict(results))


def _simulate(replica_ids: list[int]) -> list[tuple[int, SimulationOutput]]:
    assert _JOB is not None
    subsets, timer, make_scheduler, fast_forward, runner = _JOB
    out = []
    for r in replica_ids:
        sub = subsets[r]
        if sub is not None:
            out.append((r, runner(sub, timer, make_scheduler, fast_forward)))
    return out


def _merge(requests: RequestSet, groups: list[np.ndarray], outs: dict[int, SimulationOutput]) -> SimulationOutput:
    state = RequestState(requests)
    log = BatchLog()
    tbt_v: list[np.ndarray] = []
    tbt_w: list[np.ndarray] = []
    preemptions = events = 0
    num_blocks = 0
    for r, out in sorted(outs.items()):
        idx = groups[r]
        for name in _STATE_FIELDS:
            getattr(state, name)[idx] = getattr(out.state, name)
        state.replica[idx] = r
        log.replica.extend([r] * len(out.log.start))
        for name in _LOG_FIELDS:
            getattr(log, name).extend(getattr(out.log, name))
        tbt_v.append(out.tbt_values)
        tbt_w.append(out.tbt_weights)
        preemptions += out.preemptions
        events += out.events
        num_blocks = out.num_blocks
    # one log in time order, as the joint simulation writes it (ties: lower replica first)
    order = np.lexsort((np.asarray(log.replica), np.asarray(log.end)))
    for name in ("replica", *_LOG_FIELDS):
        values: list[Any] = getattr(log, name)
        setattr(log, name, np.asarray(values)[order].tolist())
    return SimulationOutput(state, log, np.concatenate(tbt_v), np.concatenate(tbt_w), preemptions, num_blocks,
                            events)
