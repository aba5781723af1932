"""Mapping search: exhaustive for small spaces, else random-pruned sampling plus hill-climbing refinement.

- Space: every problem dimension's prime factors are split over the factor slots the constraints leave open
  (temporal loops per level, spatial X / Y loops per fan-out); loop orders are free unless constrained.
- Exhaustive: when the number of distinct mappings (factor splits x orders of the non-trivial loops) is at
  most ``exhaustive_limit``, all of them are evaluated.
- Random-pruned: batches of random mappings, evaluated with ``batch.BatchEvaluator`` (numpy, no per-mapping
  Python loop), until ``victory_condition`` consecutive valid mappings bring no improvement (Timeloop's rule),
  ``max_evaluations`` or ``timeout_s``.
- Refinement: steepest-descent hill-climbing from the ``refine_starts`` best distinct random mappings; a
  neighbour moves one prime factor of one dimension to another slot, or swaps two loops inside a level.
  Each local optimum is then perturbed (``perturb_rounds`` random multi-move kicks) and climbed again.
- ``workers > 1`` runs independent searches (seeds from ``numpy.random.SeedSequence(seed).spawn``) in
  processes and keeps the best, as Timeloop's mapper threads do.
Randomness comes only from generators seeded by the caller, so a search is reproducible for a given seed.
"""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfforge.accelerators.arch import Architecture, LoopMapping
from perfforge.accelerators.batch import BatchEvaluator, BatchResult, Genomes
from perfforge.accelerators.nest import Evaluation, evaluate
from perfforge.accelerators.problem import Problem
from perfforge.core.errors import ConfigError, InfeasibleError

OBJECTIVES = ("edp", "delay", "energy")
KINDS = ("t", "x", "y")  # temporal, spatial X, spatial Y
BATCH = 1024


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
    """What a mapping may do at one storage level (from Timeloop ``architecture_constraints`` or free)."""

    fixed_temporal: dict[str, int] = field(default_factory=dict)   # dim -> factor (1 forbids a loop there)
    temporal_perm: str = ""          # innermost loops in this order (Timeloop semantics); "" = free
    x_dims: tuple[str, ...] = ()     # dims allowed on the X axis of this level's fan-out
    y_dims: tuple[str, ...] = ()
    fixed_spatial: dict[str, int] = field(default_factory=dict)    # dim -> factor (on its axis)
    keep: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class MapperResult:
    best: LoopMapping
    evaluation: Evaluation
    evaluated: int
    valid: int
    seconds: float
    method: str = "random-pruned"
    space_size: int | None = None
    workers: int = 1
    refined_gain: float = 1.0   # best random score / final score (>= 1)

    @property
    def mappings_per_s(self) -> float:
        return self.evaluated / self.seconds if self.seconds > 0 else float("inf")


def _scores(r: BatchResult, objective: str) -> np.ndarray:
    if objective == "edp":
        s = r.edp
    elif objective == "energy":
        s = r.energy_pj.copy()
    else:
        s = r.cycles * (1 + 1e-12 * r.energy_pj)
    return np.where(r.valid, s, np.inf)


# -- constraints ---------------------------------------------------------------------------------------------
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
            per[i]["tp"] = "".join(c for c in str(t.get("permutation", "")) if c in dims)
        elif kind == "spatial":
            per[i]["sf"] = _factors(t.get("factors"), dims)
            per[i]["sp"] = [c for c in str(t.get("permutation", "")) if c in dims]
            per[i]["split"] = int(t.get("split", len(per[i]["sp"])))
        elif kind in ("bypass", "datatype"):
            per[i]["keep"] = frozenset(t.get("keep") or [])
        else:
            raise ConfigError(f"constraint for '{t['target']}' has type '{kind}' (allowed: temporal, spatial, bypass, "
                              "datatype)")
    out = []
    for i, lv in enumerate(arch.levels):
        c = per[i]
        fx, fy = arch.fanout(i)
        sf = c.get("sf", {})
        if "sp" in c and c["sp"]:
            sp = c["sp"] + [d for d in dims if d not in c["sp"]]
            split = c.get("split", len(sp))
            xs, ys = sp[:split], sp[split:]
        else:
            xs, ys = list(dims), list(dims)
        xs = [d for d in xs if sf.get(d, 0) != 1] if fx > 1 else []
        ys = [d for d in ys if sf.get(d, 0) != 1] if fy > 1 else []
        out.append(LevelConstraint(fixed_temporal=c.get("tf", {}), temporal_perm=c.get("tp", ""), x_dims=tuple(xs),
                                   y_dims=tuple(ys), fixed_spatial={d: f for d, f in sf.items() if f > 1},
                                   keep=None if lv.dummy else c.get("keep")))
    return out


def free_constraints(arch: Architecture, problem: Problem) -> list[LevelConstraint]:
    dims = tuple(problem.dims)
    out = []
    for i, lv in enumerate(arch.levels):
        fx, fy = arch.fanout(i)
        out.append(LevelConstraint(fixed_temporal={d: 1 for d in dims} if lv.dummy else {},
                                   x_dims=dims if fx > 1 else (), y_dims=dims if fy > 1 else ()))
    return out


# -- the search space ----------------------------------------------------------------------------------------
class Space:
    """Factor slots per dimension and loop-order freedom per level, for one problem under constraints."""

    def __init__(self, arch: Architecture, problem: Problem, cons: list[LevelConstraint]) -> None:
        if len(cons) != len(arch.levels):
            raise ConfigError(f"{len(cons)} level constraints for {len(arch.levels)} levels")
        self.dims = list(problem.dims)
        self.L, self.D = len(arch.levels), len(self.dims)
        self.base = np.ones((3, self.L, self.D), dtype=np.int64)   # fixed factors (kind, level, dim)
        self.slots: list[list[tuple[int, int]]] = []               # per dim: (kind, level) slots that are free
        self.remainder: list[int] = []
        for j, d in enumerate(self.dims):
            sl: list[tuple[int, int]] = []
            for i, c in enumerate(cons):
                if d in c.fixed_temporal:
                    self.base[0, i, j] = c.fixed_temporal[d]
                else:
                    sl.append((0, i))
                if d in c.fixed_spatial:
                    self.base[1 if d in c.x_dims else 2, i, j] = c.fixed_spatial[d]
                else:
                    if d in c.x_dims:
                        sl.append((1, i))
                    if d in c.y_dims:
                        sl.append((2, i))
            fixed = int(np.prod(self.base[:, :, j]))
            if problem.dims[d] % fixed:
                raise ConfigError(f"constraints fix {d} factors multiplying to {fixed}, which does not divide "
                                  f"{d}={problem.dims[d]}")
            rem = problem.dims[d] // fixed
            if rem > 1 and not sl:
                raise ConfigError(f"constraints leave no loop for dimension {d} (={problem.dims[d]})")
            self.slots.append(sl or [(0, 0)])
            self.remainder.append(rem)
        self.primes = [_primes(r) for r in self.remainder]
        self.prefix: list[list[int]] = [[self.dims.index(ch) for ch in c.temporal_perm] for c in cons]
        self.keep = [c.keep for c in cons]

    # random mappings
    def random(self, rng: np.random.Generator, n: int) -> Genomes:
        F = np.broadcast_to(self.base, (n, 3, self.L, self.D)).copy()
        for j in range(self.D):
            sl = self.slots[j]
            for p in self.primes[j]:
                pick = rng.integers(len(sl), size=n)
                for s, (k, i) in enumerate(sl):
                    F[pick == s, k, i, j] *= p
        key = rng.random((n, self.L, self.D))
        for i, pre in enumerate(self.prefix):
            for r, j in enumerate(pre):
                key[:, i, j] = -1.0 - (len(pre) - r)
        rank = np.argsort(np.argsort(key, axis=2), axis=2)
        return Genomes(F[:, 0], F[:, 1], F[:, 2], rank)

    # exhaustive enumeration
    def _splits(self, j: int) -> list[tuple[int, ...]]:
        """All ordered ways to write dimension j's remainder as a product over its slots."""
        n, k = self.remainder[j], len(self.slots[j])

        def rec(n: int, k: int) -> list[tuple[int, ...]]:
            if k == 1:
                return [(n,)]
            return [(f, *rest) for f in range(1, n + 1) if n % f == 0 for rest in rec(n // f, k - 1)]
        return rec(n, k)

    def _orders(self, T: np.ndarray) -> list[list[list[int]]]:
        """Per level: every inner-first order of the non-trivial temporal loops (prefix loops stay innermost)."""
        per_level = []
        for i in range(self.L):
            pre = self.prefix[i]
            free = [j for j in range(self.D) if T[i, j] > 1 and j not in pre]
            rest = [j for j in range(self.D) if j not in pre and j not in free]
            per_level.append([pre + list(o) + rest for o in itertools.permutations(free)])
        return per_level

    def size(self, limit: int) -> int | None:
        """Exact number of distinct mappings, or None when it exceeds ``limit``."""
        splits = [self._splits(j) for j in range(self.D)]
        if math.prod(len(s) for s in splits) > limit:
            return None
        total = 0
        for T in self._factor_tables(splits):
            total += math.prod(math.factorial(sum(1 for j in range(self.D) if T[0, i, j] > 1 and j not in self.prefix[i]))
                               for i in range(self.L))
            if total > limit:
                return None
        return total

    def _factor_tables(self, splits: list[list[tuple[int, ...]]]):  # type: ignore[no-untyped-def]
        for combo in itertools.product(*splits):
            F = self.base.copy()
            for j, split in enumerate(combo):
                for (k, i), f in zip(self.slots[j], split):
                    F[k, i, j] *= f
            yield F

    def enumerate_all(self) -> Genomes:
        splits = [self._splits(j) for j in range(self.D)]
        Ts, Xs, Ys, Rs = [], [], [], []
        for F in self._factor_tables(splits):
            for orders in itertools.product(*self._orders(F[0])):
                rank = np.empty((self.L, self.D), dtype=np.int64)
                for i, o in enumerate(orders):
                    rank[i, o] = np.arange(self.D)
                Ts.append(F[0]); Xs.append(F[1]); Ys.append(F[2]); Rs.append(rank)  # noqa: E702
        return Genomes(np.array(Ts), np.array(Xs), np.array(Ys), np.array(Rs))

    # local moves
    def neighbours(self, g: Genomes) -> Genomes:
        """Every mapping one move away from the single mapping ``g``."""
        F = np.stack([g.T[0], g.SX[0], g.SY[0]])
        rank = g.rank[0]
        outF, outR = [], []
        for j in range(self.D):
            sl = self.slots[j]
            for a, (ka, ia) in enumerate(sl):
                v = int(F[ka, ia, j])
                if v == 1:
                    continue
                for p in sorted(set(_primes(v))):
                    for b, (kb, ib) in enumerate(sl):
                        if b == a:
                            continue
                        G = F.copy()
                        G[ka, ia, j] //= p
                        G[kb, ib, j] *= p
                        outF.append(G)
                        outR.append(rank)
        for i in range(self.L):
            pre = self.prefix[i]
            free = [j for j in range(self.D) if F[0, i, j] > 1 and j not in pre]
            for j1, j2 in itertools.combinations(free, 2):
                r = rank.copy()
                r[i, j1], r[i, j2] = rank[i, j2], rank[i, j1]
                outF.append(F)
                outR.append(r)
        if not outF:
            return g.take(slice(0, 0))
        A = np.array(outF)
        return Genomes(A[:, 0], A[:, 1], A[:, 2], np.array(outR))

    def perturb(self, rng: np.random.Generator, g: Genomes, moves: int) -> Genomes:
        for _ in range(moves):
            nb = self.neighbours(g)
            if len(nb) == 0:
                return g
            g = nb.take([int(rng.integers(len(nb)))])
        return g


# -- search --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Params:
    objective: str
    victory_condition: int
    max_evaluations: int
    timeout_s: float
    refine_starts: int
    perturb_rounds: int


def _climb(space: Space, ev: BatchEvaluator, g: Genomes, score: float, p: _Params, budget: list[int],
           deadline: float) -> tuple[Genomes, float]:
    while budget[0] > 0 and time.perf_counter() < deadline:
        nb = space.neighbours(g)
        if len(nb) == 0:
            break
        s = _scores(ev.evaluate(nb), p.objective)
        budget[0] -= len(nb)
        b = int(np.argmin(s))
        if not s[b] < score * (1 - 1e-12):
            break
        g, score = nb.take([b]), float(s[b])
    return g, score


def _search_one(arch: Architecture, problem: Problem, cons: list[LevelConstraint], p: _Params,
                seed: np.random.SeedSequence | int) -> tuple[Genomes | None, float, int, int, float]:
    """One independent search. Returns (best genome, its score, evaluated, valid, best random score)."""
    rng = np.random.default_rng(seed)
    space = Space(arch, problem, cons)
    ev = BatchEvaluator(arch, problem, space.keep)
    t0 = time.perf_counter()
    deadline = t0 + p.timeout_s
    evaluated = valid = since = 0
    best_s = np.inf
    pool: list[tuple[float, Genomes]] = []   # best distinct valid random mappings
    random_cap = max(1, p.max_evaluations // 2)
    stop = False
    while not stop and evaluated < random_cap and time.perf_counter() < deadline:
        g = space.random(rng, min(BATCH, random_cap - evaluated))
        s = _scores(ev.evaluate(g), p.objective)
        ok = np.flatnonzero(np.isfinite(s))
        used = len(g)
        for n, idx in enumerate(ok):
            if s[idx] < best_s:
                best_s, since = float(s[idx]), 0
            else:
                since += 1
                if since >= p.victory_condition:
                    used, stop = int(idx) + 1, True
                    ok = ok[:n + 1]
                    break
        evaluated += used
        valid += len(ok)
        if len(ok):
            top = ok[np.argsort(s[ok])[:p.refine_starts]]
            pool.extend((float(s[i]), g.take([int(i)])) for i in top)
            pool.sort(key=lambda x: x[0])
            del pool[p.refine_starts:]
    if not pool:
        return None, np.inf, evaluated, valid, np.inf
    random_best = pool[0][0]
    budget = [p.max_evaluations - evaluated]
    best_g, best = pool[0][1], pool[0][0]
    for s0, g0 in pool:
        g1, s1 = _climb(space, ev, g0, s0, p, budget, deadline)
        if s1 < best:
            best_g, best = g1, s1
    for _ in range(p.perturb_rounds):
        if budget[0] <= 0 or time.perf_counter() >= deadline:
            break
        gk = space.perturb(rng, best_g, 3)
        sk = float(_scores(ev.evaluate(gk), p.objective)[0])
        budget[0] -= 1
        if not np.isfinite(sk):
            continue
        g1, s1 = _climb(space, ev, gk, sk, p, budget, deadline)
        if s1 < best:
            best_g, best = g1, s1
    used_refine = (p.max_evaluations - evaluated) - budget[0]
    return best_g, best, evaluated + used_refine, valid, random_best


def search(arch: Architecture, problem: Problem, *, constraints: list[LevelConstraint] | None = None,
           objective: str = "edp", victory_condition: int = 500, max_evaluations: int = 200_000,
           timeout_s: float = 60.0, seed: int = 0, workers: int = 1, refine_starts: int = 8,
           perturb_rounds: int = 20, exhaustive_limit: int = 20_000) -> MapperResult:
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
    if victory_condition < 1 or max_evaluations < 1 or workers < 1:
        raise ConfigError("victory_condition, max_evaluations and workers must be >= 1")
    if timeout_s <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout_s}")
    cons = constraints or free_constraints(arch, problem)
    space = Space(arch, problem, cons)
    t0 = time.perf_counter()
    size = space.size(exhaustive_limit) if exhaustive_limit > 0 else None
    if size is not None:
        ev = BatchEvaluator(arch, problem, space.keep)
        allg = space.enumerate_all()
        s = np.concatenate([_scores(ev.evaluate(allg.take(slice(i, i + BATCH * 8))), objective)
                            for i in range(0, len(allg), BATCH * 8)])
        if not np.isfinite(s).any():
            raise InfeasibleError(f"none of the {len(allg)} mappings in the space is valid")
        b = int(np.argmin(s))
        m = ev.to_mapping(allg, b)
        return MapperResult(m, evaluate(arch, m, problem), len(allg), int(np.isfinite(s).sum()),
                            time.perf_counter() - t0, "exhaustive", size, 1, 1.0)
    p = _Params(objective, victory_condition, max_evaluations // workers, timeout_s, refine_starts, perturb_rounds)
    seeds = np.random.SeedSequence(seed).spawn(workers)
    if workers == 1:
        results = [_search_one(arch, problem, cons, p, seeds[0])]
    else:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            results = list(ex.map(_search_one, *zip(*[(arch, problem, cons, p, sd) for sd in seeds])))
    evaluated = sum(r[2] for r in results)
    valid = sum(r[3] for r in results)
    found = [r for r in results if r[0] is not None]
    if not found:
        raise InfeasibleError(f"no valid mapping found in {evaluated} candidates")
    best = min(found, key=lambda r: r[1])
    ev = BatchEvaluator(arch, problem, space.keep)
    m = ev.to_mapping(best[0], 0)  # type: ignore[arg-type]
    full = evaluate(arch, m, problem)
    gain = min(r[4] for r in found) / best[1]
    return MapperResult(m, full, evaluated, valid, time.perf_counter() - t0,
                        "random-pruned + hill-climbing", None, workers, gain)


def mapping_to_timeloop(arch: Architecture, problem: Problem, m: LoopMapping) -> list[dict[str, Any]]:
    """A mapping as Timeloop v0.4 ``mapping`` entries (permutations innermost first)."""
    dims = list(problem.dims)
    out: list[dict[str, Any]] = []
    for lv, lm in zip(arch.levels, m.levels):
        if lm.keep is not None:
            out.append({"target": lv.name, "type": "datatype", "keep": sorted(lm.keep),
                        "bypass": sorted(d.name for d in problem.data_spaces if d.name not in lm.keep)})
        perm = [c for c in lm.permutation if c in dims]
        out.append({"target": lv.name, "type": "temporal",
                    "factors": " ".join(f"{d}{lm.temporal.get(d, 1)}" for d in dims),
                    "permutation": "".join(perm + [d for d in dims if d not in perm])})
        if lm.spatial_x or lm.spatial_y:
            sperm = list(lm.spatial_x) + list(lm.spatial_y) + [d for d in dims if d not in lm.spatial_x
                                                                and d not in lm.spatial_y]
            f = {**lm.spatial_x, **lm.spatial_y}
            out.append({"target": lv.name, "type": "spatial", "factors": " ".join(f"{d}{f.get(d, 1)}" for d in dims),
                        "permutation": "".join(sperm), "split": len(lm.spatial_x)})
    return out


__all__ = ["LevelConstraint", "MapperResult", "OBJECTIVES", "Space", "constraints_from_timeloop", "free_constraints",
           "mapping_to_timeloop", "search"]
