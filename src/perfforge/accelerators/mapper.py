"""Random-pruned mapping search with Timeloop's victory condition and delay / energy / EDP objectives.

Each candidate splits every problem dimension's prime factors at random over the levels' temporal and
spatial slots that the constraints leave open, draws loop permutations, evaluates the mapping with
``nest.evaluate`` and keeps the best valid one. The search stops after ``victory_condition`` consecutive
valid candidates without improvement, after ``max_evaluations``, or after ``timeout_s``.
Randomness comes from a ``numpy.random.Generator`` seeded by the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from perfforge.accelerators.arch import Architecture, LevelMapping, LoopMapping
from perfforge.accelerators.nest import Evaluation, evaluate
from perfforge.accelerators.problem import Problem
from perfforge.core.errors import ConfigError, InfeasibleError

OBJECTIVES = ("edp", "delay", "energy")


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


@dataclass(frozen=True, slots=True)
class LevelConstraint:
    fixed_temporal: dict[str, int]
    temporal_perm: str | None        # full permutation (innermost first) or None = free
    spatial_dims: tuple[str, ...]    # dims allowed spatially at this level
    spatial_split: int               # first `split` spatial dims (in spatial_dims order) go to X
    fixed_spatial: dict[str, int]
    keep: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class MapperResult:
    best: LoopMapping
    evaluation: Evaluation
    evaluated: int
    valid: int
    seconds: float

    @property
    def mappings_per_s(self) -> float:
        return self.evaluated / self.seconds if self.seconds > 0 else float("inf")


def _score(ev: Evaluation, objective: str) -> float:
    return {"edp": ev.edp, "delay": ev.cycles, "energy": ev.energy_pj}[objective] if objective != "delay" else \
        ev.cycles * (1 + 1e-12 * ev.energy_pj)


def constraints_from_timeloop(spec: dict[str, Any], arch: Architecture, problem: Problem) -> list[LevelConstraint]:
    """Read Timeloop ``architecture_constraints`` targets (factors, permutation, split, bypass/keep)."""
    from perfforge.accelerators.timeloop_io import _factors

    dims = list(problem.dims)
    raw = (spec.get("architecture_constraints") or {}).get("targets", []) or []
    per: dict[int, dict[str, Any]] = {i: {} for i in range(len(arch.levels))}
    for t in raw:
        i = arch.index(str(t["target"]))
        kind = t.get("type")
        if kind == "temporal":
            per[i]["tf"] = _factors(t.get("factors"), dims)
            perm = "".join(c for c in str(t.get("permutation", "")) if c in dims)
            per[i]["tp"] = perm if len(perm) == len(dims) else None
        elif kind == "spatial":
            per[i]["sf"] = _factors(t.get("factors"), dims)
            perm = [c for c in str(t.get("permutation", "")) if c in dims]
            per[i]["sp"] = perm
            per[i]["split"] = int(t.get("split", len(perm)))
        elif kind in ("bypass", "datatype"):
            per[i]["keep"] = frozenset(t.get("keep") or [])
    out = []
    for i, lv in enumerate(arch.levels):
        c = per[i]
        fx, fy = arch.fanout(i) if i < len(arch.levels) else (1, 1)
        sf = c.get("sf", {})
        sp = c.get("sp") or dims
        allowed = tuple(d for d in sp if sf.get(d, 0) != 1) if fx * fy > 1 else ()
        split = c.get("split", len(sp))
        x_dims = [d for d in sp[:split] if d in allowed]
        out.append(LevelConstraint(fixed_temporal=c.get("tf", {}), temporal_perm=c.get("tp"),
                                   spatial_dims=tuple(x_dims + [d for d in allowed if d not in x_dims]),
                                   spatial_split=len(x_dims), fixed_spatial=sf,
                                   keep=None if lv.dummy else c.get("keep")))
    return out


def free_constraints(arch: Architecture, problem: Problem) -> list[LevelConstraint]:
    dims = tuple(problem.dims)
    out = []
    for i, lv in enumerate(arch.levels):
        fx, fy = arch.fanout(i)
        sd = dims if fx * fy > 1 else ()
        out.append(LevelConstraint({d: 1 for d in dims} if lv.dummy else {}, None, sd, len(sd) if fy == 1 else 0,
                                   {}, None))
    return out


def _random_mapping(rng: np.random.Generator, arch: Architecture, problem: Problem,
                    cons: list[LevelConstraint]) -> LoopMapping:
    dims = list(problem.dims)
    n = len(arch.levels)
    temporal = [{d: 1 for d in dims} for _ in range(n)]
    spatial = [{d: 1 for d in dims} for _ in range(n)]
    for d in dims:
        slots: list[tuple[str, int]] = []
        for i, c in enumerate(cons):
            if d not in c.fixed_temporal:
                slots.append(("t", i))
            if d in c.spatial_dims:
                slots.append(("s", i))
        if not slots:
            slots = [("t", 0)]
        for p in _primes(problem.dims[d]):
            kind, i = slots[int(rng.integers(len(slots)))]
            (temporal if kind == "t" else spatial)[i][d] *= p
    levels = []
    for i, c in enumerate(cons):
        perm = c.temporal_perm or "".join(rng.permutation(dims))
        sx = {d: spatial[i][d] for d in c.spatial_dims[:c.spatial_split] if spatial[i][d] > 1}
        sy = {d: spatial[i][d] for d in c.spatial_dims[c.spatial_split:] if spatial[i][d] > 1}
        levels.append(LevelMapping(temporal={d: f for d, f in temporal[i].items() if f > 1}, permutation=perm,
                                   spatial_x=sx, spatial_y=sy, keep=c.keep))
    return LoopMapping(levels=tuple(levels))


def search(arch: Architecture, problem: Problem, *, constraints: list[LevelConstraint] | None = None,
           objective: str = "edp", victory_condition: int = 500, max_evaluations: int = 100_000,
           timeout_s: float = 60.0, seed: int = 0) -> MapperResult:
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
    if victory_condition < 1 or max_evaluations < 1:
        raise ConfigError("victory_condition and max_evaluations must be >= 1")
    cons = constraints or free_constraints(arch, problem)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    best: tuple[float, LoopMapping, Evaluation] | None = None
    evaluated = valid = since = 0
    while evaluated < max_evaluations and time.perf_counter() - t0 < timeout_s:
        m = _random_mapping(rng, arch, problem, cons)
        evaluated += 1
        ev = evaluate(arch, m, problem)
        if not ev.valid:
            continue
        valid += 1
        s = _score(ev, objective)
        if best is None or s < best[0]:
            best, since = (s, m, ev), 0
        else:
            since += 1
            if since >= victory_condition:
                break
    if best is None:
        raise InfeasibleError(f"no valid mapping found in {evaluated} candidates")
    return MapperResult(best[1], best[2], evaluated, valid, time.perf_counter() - t0)


def mapping_to_timeloop(arch: Architecture, problem: Problem, m: LoopMapping) -> list[dict[str, Any]]:
    """A mapping as Timeloop v0.4 ``mapping`` entries (permutations innermost first)."""
    dims = list(problem.dims)
    out: list[dict[str, Any]] = []
    for lv, lm in zip(arch.levels, m.levels):
        if lm.keep is not None:
            out.append({"target": lv.name, "type": "datatype", "keep": sorted(lm.keep),
                        "bypass": sorted(d.name for d in problem.data_spaces if d.name not in lm.keep)})
        out.append({"target": lv.name, "type": "temporal",
                    "factors": " ".join(f"{d}{lm.temporal.get(d, 1)}" for d in dims),
                    "permutation": lm.permutation or "".join(dims)})
        if lm.spatial_x or lm.spatial_y:
            perm = list(lm.spatial_x) + list(lm.spatial_y) + [d for d in dims if d not in lm.spatial_x
                                                               and d not in lm.spatial_y]
            f = {**lm.spatial_x, **lm.spatial_y}
            out.append({"target": lv.name, "type": "spatial", "factors": " ".join(f"{d}{f.get(d, 1)}" for d in dims),
                        "permutation": "".join(perm), "split": len(lm.spatial_x)})
    return out


__all__ = ["MapperResult", "OBJECTIVES", "constraints_from_timeloop", "free_constraints", "mapping_to_timeloop",
           "search", "replace"]
