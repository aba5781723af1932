"""Replay Chakra execution traces with a small event-driven scheduler: a check of an export without ASTRA-sim.

Semantics (deliberately simple; congestion-unaware, like ASTRA-sim's analytical backend):

- a node starts once every dependency (data or control) has finished; a compute node takes its duration;
- a send finishes as soon as it is issued (the sender does not wait) and its bytes arrive ``p2p_s(size)`` later;
  a receive finishes when the matching send's bytes (same source, destination and tag) have arrived;
- the k-th collective a rank reaches in a communicator group is the k-th of every other member (as NCCL requires:
  the same collectives in the same order); it starts once the last member has reached it and the group's previous
  collective is done (one stream per communicator), and takes ``collective_s(kind, size, group)``;
- links and compute units are not shared between nodes that overlap.

A receive that no send matches, a collective whose members disagree on its type or size, or nodes that can
never start are errors naming them.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfforge.adapters import chakra as et
from perfforge.adapters.chakra import EtNode
from perfforge.core.errors import ConfigError

KIND_OF = {code: kind for kind, code in et.COMM_TYPES.items()}
ALL_RANKS = 0   # a collective without a communicator group runs over every rank (ASTRA-sim's reading of 0)


@dataclass(frozen=True)
class ReplayResult:
    finish_s: float                    # when the last node of any rank finished
    rank_finish_s: tuple[float, ...]
    compute_s: tuple[float, ...]       # each rank's compute durations, summed
    nodes: int

    @property
    def exposed_s(self) -> float:
        """The slowest rank's finish minus its compute: what communication and waiting added."""
        r = max(range(len(self.rank_finish_s)), key=self.rank_finish_s.__getitem__)
        return self.rank_finish_s[r] - self.compute_s[r]


def replay(traces: Sequence[Sequence[EtNode]], groups: dict[int, list[int]], *,
           collective_s: Callable[[str, int, int], float], p2p_s: Callable[[int], float],
           ranks: Sequence[int] | None = None) -> ReplayResult:
    """Replay ``traces`` (one per rank; ``ranks`` names them, default 0..n-1). ``groups``: communicator group id ->
    member ranks; a collective with no ``pg_name`` (or group 0) runs over every rank. ``collective_s(kind, size,
    group)`` and ``p2p_s(size)`` are the costs in seconds."""
    names = list(ranks) if ranks is not None else list(range(len(traces)))
    index = {rank: i for i, rank in enumerate(names)}
    members = {g: [index[m] for m in ms if m in index] for g, ms in groups.items()}
    members[ALL_RANKS] = list(range(len(traces)))
    finish: dict[tuple[int, int], float] = {}
    arrivals: dict[tuple[int, int, int], float] = {}
    blocked: dict[tuple[int, int, int], tuple[int, int, float]] = {}
    instances: dict[tuple[int, int], list[tuple[int, int, float, EtNode]]] = defaultdict(list)
    reached: dict[tuple[int, int], int] = defaultdict(int)
    group_free: dict[int, float] = defaultdict(float)
    waiting: dict[tuple[int, int], int] = {}
    ready_at: dict[tuple[int, int], float] = {}
    children: dict[tuple[int, int], list[int]] = defaultdict(list)
    for r, trace in enumerate(traces):
        for n in trace:
            deps = set(n.ctrl_deps) | set(n.data_deps)
            waiting[r, n.id], ready_at[r, n.id] = len(deps), 0.0
            for dep in deps:
                children[r, dep].append(n.id)
    heap = [(0.0, r, n.id) for r, trace in enumerate(traces) for n in trace if not waiting[r, n.id]]
    heapq.heapify(heap)

    def done(r: int, nid: int, t: float) -> None:
        finish[r, nid] = t
        for c in children[r, nid]:
            waiting[r, c] -= 1
            ready_at[r, c] = max(ready_at[r, c], t)
            if not waiting[r, c]:
                heapq.heappush(heap, (ready_at[r, c], r, c))

    while heap:   # in time order, as a simulator issues them
        t0, r, nid = heapq.heappop(heap)
        n = traces[r][nid]
        if n.type == et.COMP_NODE:
            done(r, nid, t0 + n.duration_micros * 1e-6)
        elif n.type == et.COMM_SEND_NODE:
            key = (int(n.attrs["comm_src"]), int(n.attrs["comm_dst"]), int(n.attrs["comm_tag"]))
            arrivals[key] = t0 + p2p_s(int(n.attrs["comm_size"]))
            done(r, nid, t0)
            if key in blocked:
                rr, rid, rt = blocked.pop(key)
                done(rr, rid, max(rt, arrivals[key]))
        elif n.type == et.COMM_RECV_NODE:
            key = (int(n.attrs["comm_src"]), int(n.attrs["comm_dst"]), int(n.attrs["comm_tag"]))
            if key in arrivals:
                done(r, nid, max(t0, arrivals[key]))
            else:
                blocked[key] = (r, nid, t0)
        elif n.type == et.COMM_COLL_NODE:
            group = int(n.attrs.get("pg_name") or ALL_RANKS)
            if group not in members:
                raise ConfigError(f"rank {names[r]} node {n.id} ({n.name}): communicator group {group} is not defined")
            k = reached[r, group]
            reached[r, group] += 1
            inst = instances[group, k]
            first = inst[0][3] if inst else n
            if (first.attrs["comm_type"], first.attrs["comm_size"]) != (n.attrs["comm_type"], n.attrs["comm_size"]):
                raise ConfigError(f"group {group}'s collective {k} differs across ranks: {first.name} against {n.name} "
                                  f"(rank {names[r]})")
            inst.append((r, nid, t0, n))
            if len(inst) == len(members[group]):
                start = max(max(x[2] for x in inst), group_free[group])
                end = group_free[group] = start + collective_s(KIND_OF[int(n.attrs["comm_type"])],
                                                               int(n.attrs["comm_size"]), group)
                for rr, rid, _, _ in inst:
                    done(rr, rid, end)
        else:
            done(r, nid, t0)   # metadata and other nodes take no time
    if blocked:
        (src, dst, tag), (r, nid, _) = next(iter(blocked.items()))
        raise ConfigError(f"the traces cannot all run: {len(blocked)} receives have no matching send (first: rank "
                          f"{names[r]} {traces[r][nid].name}, from rank {src}, tag {tag})")
    stuck = [(names[r], traces[r][nid].name) for (r, nid) in waiting if (r, nid) not in finish]
    if stuck:
        raise ConfigError(f"the traces cannot all run: {len(stuck)} nodes never started (first: rank {stuck[0][0]} "
                          f"{stuck[0][1]})")
    rank_finish = tuple(max((finish[r, n.id] for n in trace), default=0.0) for r, trace in enumerate(traces))
    compute = tuple(sum(n.duration_micros for n in trace if n.type == et.COMP_NODE) * 1e-6 for trace in traces)
    return ReplayResult(max(rank_finish, default=0.0), rank_finish, compute, sum(len(t) for t in traces))


def replay_export(folder: str | Path) -> dict[str, Any]:
    """Replay a folder written by ``perfforge astra-sim export`` with perfforge's own collective and link costs for
    its scenario, next to perfforge's own step time. A data-parallel export's ranks are identical: rank 0 alone is
    replayed, its collectives over every rank."""
    from perfforge.adapters.astrasim_hybrid import comm_groups
    from perfforge.api import run_scenario
    from perfforge.distributed.collectives import collective_time
    from perfforge.distributed.engine import hybrid_plan
    from perfforge.distributed.hybrid import send_s
    from perfforge.distributed.topology import job_topology
    from perfforge.engines.analytical.engine import AnalyticalEngine
    from perfforge.scenario import Scenario
    from perfforge.system.catalog import get_device
    from perfforge.system.system import System

    f = Path(folder)
    try:
        manifest = json.loads((f / "manifest.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{f}: not an exported folder (run `perfforge astra-sim export` first)") from None
    scenario = Scenario.model_validate(manifest["scenario"])
    groups: dict[int, list[int]] = {}
    if manifest.get("comm_groups"):
        groups = {int(k): v for k, v in json.loads((f / manifest["comm_groups"]).read_text()).items()}
        plan, h, _ = hybrid_plan(scenario)
        tp_groups = set(comm_groups(h.par.tp, h.par.dp, h.par.pp)[1].values())
        nccl = {"efficiency": h.cal.collective_efficiency, "launch_s": h.cal.collective_launch_s}
        link = plan.pp_link

        def collective_s(kind: str, size: int, group: int) -> float:
            return collective_time(kind, size, plan.tp_topo if group in tp_groups else plan.dp_topo, **nccl)

        def p2p_s(size: int) -> float:
            return send_s(link, size, h.cal.collective_efficiency)

        ranks = list(range(manifest["npus"]))
    else:
        system = System(device=get_device(scenario.hardware), num_devices=scenario.gpus)
        cal = AnalyticalEngine().calibration_for(system, scenario)
        _, topo = job_topology(scenario.hardware, scenario.node, scenario.gpus)
        algorithms = {d.name: scenario.collective_algorithm for d in topo.dims}

        def collective_s(kind: str, size: int, group: int) -> float:
            return collective_time(kind, size, topo, algorithms=algorithms, efficiency=cal.collective_efficiency,
                                   launch_s=cal.collective_launch_s)

        def p2p_s(size: int) -> float:
            raise ConfigError("a data-parallel export has no point-to-point nodes")

        ranks = [0]
    traces = [et.read_et((f / f"{manifest['workload_prefix']}.{r}.et").read_bytes())[1] for r in ranks]
    res = replay(traces, groups, collective_s=collective_s, p2p_s=p2p_s, ranks=ranks)
    own = run_scenario(scenario).step_time_s
    return {"replay_s": res.finish_s, "perfforge_step_s": own, "ratio": res.finish_s / own,
            "exposed_s": res.exposed_s, "ranks_replayed": len(ranks), "nodes": res.nodes}
