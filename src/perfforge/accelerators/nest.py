"""Analytical loop-nest evaluation (Timeloop-style): accesses per level, cycles, utilisation, energy.

Counting rules (checked against Timeloop's reference outputs for the Eyeriss-like VGG02 layer 5 in
``tests/accelerators/test_timeloop.py``):
- a level's tile for a data space is the projection of all loops at that level and below;
- a child's fills: walk the temporal loops above it outward; loops irrelevant to the data space inside the
  innermost relevant loop give reuse (the tile stays); each step of the innermost relevant loop brings a new
  tile, or only the new part (sliding window) when that loop is the innermost temporal loop above the child;
- a parent serves the union of its children's tiles once (multicast), and receives partial sums once per
  element (spatial reduction); the same holds between the innermost keeper and the MACs: operands are read
  every compute cycle once per distinct element under the spatial loops below that keeper;
- a dimension split over both spatial axes of one level is invalid (Timeloop cannot express it);
- read-write data (partial sums): the first visit of an element is not filled from the parent; the MAC's
  read of the innermost partial-sum buffer is skipped for an element's first accumulation;
- energy: (accesses / block size) x per-action energy, plus leakage x cycles x instances for storage;
- cycles: max(compute cycles, each level's accesses / bandwidth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from perfforge.accelerators.arch import Architecture, LevelMapping, LoopMapping, ordered_temporal
from perfforge.accelerators.problem import DataSpace, Problem
from perfforge.core.errors import ConfigError, InfeasibleError


@dataclass(frozen=True, slots=True)
class Loop:
    level: int
    spatial: bool
    dim: str
    factor: int


@dataclass(slots=True)
class LevelStats:
    name: str
    reads: dict[str, float] = field(default_factory=dict)
    fills: dict[str, float] = field(default_factory=dict)
    updates: dict[str, float] = field(default_factory=dict)
    tile_words: dict[str, int] = field(default_factory=dict)
    energy_pj: float = 0.0
    leak_pj: float = 0.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    cycles: float
    compute_cycles: int
    macs: int
    utilization: float
    energy_pj: float
    energy_breakdown_pj: dict[str, float]
    levels: tuple[LevelStats, ...]
    valid: bool
    reason: str = ""

    @property
    def edp(self) -> float:
        return self.energy_pj * self.cycles

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles, "compute_cycles": self.compute_cycles, "macs": self.macs,
            "utilization": self.utilization, "energy_pj": self.energy_pj, "energy_uj": self.energy_pj * 1e-6,
            "energy_breakdown_pj": self.energy_breakdown_pj,
            "energy_per_mac_fj": {k: v / self.macs * 1e3 for k, v in self.energy_breakdown_pj.items()},
            "edp_pj_cycles": self.edp, "valid": self.valid, "reason": self.reason,
            "accesses": {lv.name: {"reads": lv.reads, "fills": lv.fills, "updates": lv.updates,
                                   "tile_words": lv.tile_words} for lv in self.levels},
        }


def build_nest(arch: Architecture, mapping: LoopMapping, problem: Problem) -> list[Loop]:
    if len(mapping.levels) != len(arch.levels):
        raise ConfigError(f"mapping has {len(mapping.levels)} levels, architecture '{arch.name}' has {len(arch.levels)}")
    dims = list(problem.dims)
    nest: list[Loop] = []
    totals = {d: 1 for d in dims}
    for i, lm in enumerate(mapping.levels):
        for d, f in ordered_temporal(lm, dims):
            nest.append(Loop(i, False, d, f))
        for sp in (lm.spatial_x, lm.spatial_y):
            for d, f in sp.items():
                if d not in problem.dims:
                    raise ConfigError(f"mapping uses unknown dimension '{d}' (dimensions: {', '.join(dims)})")
                if f > 1:
                    nest.append(Loop(i, True, d, int(f)))
        for src in (lm.temporal, lm.spatial_x, lm.spatial_y):
            for d, f in src.items():
                if d not in problem.dims:
                    raise ConfigError(f"mapping uses unknown dimension '{d}' (dimensions: {', '.join(dims)})")
                totals[d] *= int(f)
    bad = {d: (totals[d], problem.dims[d]) for d in dims if totals[d] != problem.dims[d]}
    if bad:
        d, (got, want) = next(iter(bad.items()))
        raise ConfigError(f"mapping factors of {d} multiply to {got}, problem has {d}={want}")
    return nest


def _extent_box(loops: list[Loop], dims: list[str]) -> dict[str, int]:
    box = {d: 1 for d in dims}
    for lp in loops:
        box[lp.dim] *= lp.factor
    return box


def _fills(ds: DataSpace, tile: dict[str, int], above_temporal: list[Loop]) -> float:
    """Elements delivered to one instance whose tile is ``tile`` while ``above_temporal`` (outer->inner) iterate."""
    size = ds.extent(tile)
    jr = -1
    for idx in range(len(above_temporal) - 1, -1, -1):
        if ds.relevant(above_temporal[idx].dim):
            jr = idx
            break
    if jr < 0:
        return float(size)
    outer = math.prod(lp.factor for lp in above_temporal[:jr])
    lp = above_temporal[jr]
    if jr == len(above_temporal) - 1:  # innermost: sliding-window deltas along this loop
        grown = dict(tile)
        grown[lp.dim] = tile[lp.dim] * 2
        delta = ds.extent(grown) - size
        return float(outer * (size + (lp.factor - 1) * delta))
    return float(outer * lp.factor * size)


def _distinct(ds: DataSpace, tile: dict[str, int], above_temporal: list[Loop]) -> float:
    box = dict(tile)
    for lp in above_temporal:
        box[lp.dim] *= lp.factor
    return float(ds.extent(box))


def evaluate(arch: Architecture, mapping: LoopMapping, problem: Problem, *, check: bool = True) -> Evaluation:
    dims = list(problem.dims)
    nest = build_nest(arch, mapping, problem)
    nlev = len(arch.levels)
    stats = [LevelStats(lv.name) for lv in arch.levels]
    reasons: list[str] = []

    # fan-out validity
    for i, lm in enumerate(mapping.levels):
        fx, fy = arch.fanout(i) if i < nlev else (1, 1)
        sx = math.prod(int(f) for f in lm.spatial_x.values())
        sy = math.prod(int(f) for f in lm.spatial_y.values())
        if sx > fx or sy > fy:
            reasons.append(f"{arch.levels[i].name}: spatial {sx}x{sy} exceeds fan-out {fx}x{fy}")
        both = [d for d, f in lm.spatial_x.items() if int(f) > 1 and int(lm.spatial_y.get(d, 1)) > 1]
        if both:
            reasons.append(f"{arch.levels[i].name}: dimension {both[0]} is split over both spatial axes "
                           "(Timeloop cannot express it)")

    compute_cycles = math.prod(lp.factor for lp in nest if not lp.spatial)
    macs = problem.macs

    def keeps(i: int, ds: DataSpace) -> bool:
        lv, lm = arch.levels[i], mapping.levels[i]
        if lv.dummy:
            return False
        return i == 0 or lm.keep is None or ds.name in lm.keep

    for ds in problem.data_spaces:
        keepers = [i for i in range(nlev) if keeps(i, ds)]
        if not keepers or keepers[0] != 0:
            raise ConfigError(f"data space {ds.name} must be kept at the outermost level '{arch.levels[0].name}'")
        for pos, k in enumerate(keepers):
            child = keepers[pos + 1] if pos + 1 < len(keepers) else nlev  # nlev = the MACs
            k_loops = [lp for lp in nest if lp.level >= k]
            stats[k].tile_words[ds.name] = ds.extent(_extent_box(k_loops, dims))
            k_instances = math.prod(lp.factor for lp in nest if lp.spatial and lp.level < k)
            if child == nlev:
                # the MACs read operands every cycle; a group of MACs under spatial loops below this level is
                # served once per distinct element (multicast) and reduced once per element (spatial reduction)
                sp_box = _extent_box([lp for lp in nest if lp.spatial and lp.level >= k], dims)
                group = k_instances * compute_cycles
                lv_k = arch.levels[k]
                if ds.read_write:
                    k_tile = _extent_box(k_loops, dims)
                    distinct = _distinct(ds, k_tile, [lp for lp in nest if not lp.spatial and lp.level < k]) \
                        * k_instances
                    upd = group * ds.extent(sp_box) if lv_k.spatial_reduction else macs
                    stats[k].updates[ds.name] = stats[k].updates.get(ds.name, 0.0) + upd
                    stats[k].reads[ds.name] = stats[k].reads.get(ds.name, 0.0) + upd - distinct
                else:
                    rd = group * ds.extent(sp_box) if lv_k.multicast else macs
                    stats[k].reads[ds.name] = stats[k].reads.get(ds.name, 0.0) + rd
                continue
            c_loops = [lp for lp in nest if lp.level >= child]
            tile_c = _extent_box(c_loops, dims)
            above_t = [lp for lp in nest if not lp.spatial and lp.level < child]
            between_s = [lp for lp in nest if lp.spatial and k <= lp.level < child]
            c_instances = k_instances * math.prod(lp.factor for lp in between_s)
            tile_u = dict(tile_c)
            for lp in between_s:
                tile_u[lp.dim] *= lp.factor
            lv_k = arch.levels[k]
            v_c = _fills(ds, tile_c, above_t)          # per child instance, cold visits included
            v_u = _fills(ds, tile_u, above_t)          # per group of children served together
            if ds.read_write:
                d_c = _distinct(ds, tile_c, above_t)
                d_u = _distinct(ds, tile_u, above_t)
                fills_child = (v_c - d_c) * c_instances
                served = (v_u - d_u) * k_instances if lv_k.multicast else fills_child
                received = v_u * k_instances if lv_k.spatial_reduction else v_c * c_instances
                stats[child].fills[ds.name] = stats[child].fills.get(ds.name, 0.0) + fills_child
                stats[k].reads[ds.name] = stats[k].reads.get(ds.name, 0.0) + served
                stats[k].updates[ds.name] = stats[k].updates.get(ds.name, 0.0) + received
                # the child drains its partial sums to the parent: reads at the child (innermost excepted)
                if pos + 2 < len(keepers):
                    stats[child].reads[ds.name] = stats[child].reads.get(ds.name, 0.0) + v_c * c_instances
            else:
                fills_child = v_c * c_instances
                served = v_u * k_instances if lv_k.multicast else fills_child
                stats[child].fills[ds.name] = stats[child].fills.get(ds.name, 0.0) + fills_child
                stats[k].reads[ds.name] = stats[k].reads.get(ds.name, 0.0) + served

    # capacity validity
    for i, lv in enumerate(arch.levels):
        used = sum(stats[i].tile_words.values())
        if used > lv.capacity_words:
            reasons.append(f"{lv.name}: tiles need {used} words, capacity {lv.capacity_words:g}")

    # cycles: compute-bound or bandwidth-bound at some level
    cycles = float(compute_cycles)
    for i, lv in enumerate(arch.levels):
        inst = max(1, lv.instances)
        rd = sum(stats[i].reads.values()) / inst
        wr = (sum(stats[i].fills.values()) + sum(stats[i].updates.values())) / inst
        if lv.read_bandwidth:
            cycles = max(cycles, rd / lv.read_bandwidth)
        if lv.write_bandwidth:
            cycles = max(cycles, wr / lv.write_bandwidth)

    breakdown: dict[str, float] = {}
    for i, lv in enumerate(arch.levels):
        if lv.dummy:
            continue
        b = lv.block_size
        e = (sum(stats[i].reads.values()) * lv.e("read") + sum(stats[i].fills.values()) * lv.e("write")
             + sum(stats[i].updates.values()) * lv.e("update")) / b
        leak = lv.leak_pj_per_cycle * cycles * lv.instances
        stats[i].energy_pj, stats[i].leak_pj = e, leak
        breakdown[lv.name] = e + leak
    breakdown[arch.compute.name] = macs * arch.compute.energy_pj
    total = sum(breakdown.values())
    util = macs / (cycles * arch.compute.instances)
    if check and reasons:
        return Evaluation(cycles, compute_cycles, macs, util, total, breakdown, tuple(stats), False, "; ".join(reasons))
    return Evaluation(cycles, compute_cycles, macs, util, total, breakdown, tuple(stats), not reasons, "; ".join(reasons))


def require_valid(ev: Evaluation) -> Evaluation:
    if not ev.valid:
        raise InfeasibleError(f"mapping is invalid: {ev.reason}")
    return ev


__all__ = ["Evaluation", "LevelMapping", "LevelStats", "evaluate", "require_valid"]
