"""Vectorised loop-nest evaluation: the counting rules of ``nest.evaluate`` over a batch of mappings at once.

A batch holds ``B`` mappings of one problem on one architecture as integer arrays (levels outermost first,
dimensions in ``problem.dims`` order):

- ``T[b, level, dim]``: temporal factor; ``SX``/``SY``: spatial factors on the X / Y axis of the fan-out;
- ``rank[b, level, dim]``: loop order inside a level, 0 = innermost (Timeloop permutations list innermost first).

Which data spaces each level keeps is fixed for the batch (the mapper's constraints fix it). Results agree
with ``nest.evaluate`` to floating-point rounding; ``tests/accelerators/test_mapper.py`` checks that on
random mappings. Everything is float64 numpy; no Python loop runs per mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from perfforge.accelerators.arch import Architecture, LevelMapping, LoopMapping
from perfforge.accelerators.problem import Problem
from perfforge.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Genomes:
    """A batch of mappings as arrays (see the module docstring)."""

    T: np.ndarray
    SX: np.ndarray
    SY: np.ndarray
    rank: np.ndarray

    def __len__(self) -> int:
        return int(self.T.shape[0])

    def take(self, idx: np.ndarray | list[int] | slice) -> "Genomes":
        return Genomes(self.T[idx], self.SX[idx], self.SY[idx], self.rank[idx])


@dataclass(frozen=True, slots=True)
class BatchResult:
    cycles: np.ndarray
    energy_pj: np.ndarray
    valid: np.ndarray

    @property
    def edp(self) -> np.ndarray:
        return self.cycles * self.energy_pj


class BatchEvaluator:
    """Evaluate many mappings of ``problem`` on ``arch`` with fixed per-level ``keep`` sets."""

    def __init__(self, arch: Architecture, problem: Problem, keep: Sequence[frozenset[str] | None]) -> None:
        if len(keep) != len(arch.levels):
            raise ConfigError(f"keep has {len(keep)} entries, architecture '{arch.name}' has {len(arch.levels)} levels")
        self.arch, self.problem, self.keep = arch, problem, tuple(keep)
        self.dims = list(problem.dims)
        self.D, self.L = len(self.dims), len(arch.levels)
        self.proj: list[np.ndarray] = []      # per data space: (n_proj_dims, D) coefficients
        self.relevant: list[np.ndarray] = []  # per data space: (D,) bool
        for ds in problem.data_spaces:
            m = np.zeros((len(ds.projection), self.D))
            for j, terms in enumerate(ds.projection):
                for d, c in terms:
                    m[j, self.dims.index(d)] += c
            self.proj.append(m)
            self.relevant.append((m != 0).any(axis=0))
        self.keepers: list[list[int]] = []
        for ds in problem.data_spaces:
            ks = [i for i, lv in enumerate(arch.levels)
                  if not lv.dummy and (i == 0 or keep[i] is None or ds.name in keep[i])]  # type: ignore[operator]
            if not ks or ks[0] != 0:
                raise ConfigError(f"data space {ds.name} must be kept at the outermost level '{arch.levels[0].name}'")
            self.keepers.append(ks)
        self.fan = np.array([arch.fanout(i) for i in range(self.L)], dtype=float)  # (L, 2)
        self.cap = np.array([lv.capacity_words for lv in arch.levels], dtype=float)

    # -- helpers -------------------------------------------------------------------------------------------
    def _extent(self, s: int, box: np.ndarray) -> np.ndarray:
        return np.prod((box - 1.0) @ self.proj[s].T + 1.0, axis=1)

    def _fills(self, s: int, tile: np.ndarray, T: np.ndarray, pos: np.ndarray, child: int) -> np.ndarray:
        """Per-instance deliveries of data space ``s`` (``nest._fills``) for temporal loops above ``child``."""
        B = tile.shape[0]
        size = self._extent(s, tile)
        if child == 0:
            return size
        Tf = T[:, :child, :].reshape(B, -1)
        pf = pos[:, :child, :].reshape(B, -1)
        nontriv = Tf > 1
        rel = np.tile(self.relevant[s], child)[None, :]
        cand = nontriv & rel
        has = cand.any(axis=1)
        jr_pos = np.where(cand, pf, -1).max(axis=1)
        j_idx = np.argmax(np.where(cand, pf, -1), axis=1)
        f = Tf[np.arange(B), j_idx]
        outer = np.prod(np.where(pf < jr_pos[:, None], Tf, 1.0), axis=1)
        innermost = ~(nontriv & (pf > jr_pos[:, None])).any(axis=1)
        grown = tile.copy()
        d_idx = j_idx % self.D
        grown[np.arange(B), d_idx] *= 2.0
        delta = self._extent(s, grown) - size
        per_step = np.where(innermost, size + (f - 1.0) * delta, f * size)
        return np.where(has, outer * per_step, size)

    def _distinct(self, s: int, tile: np.ndarray, T: np.ndarray, upto: int) -> np.ndarray:
        return self._extent(s, tile * np.prod(T[:, :upto, :], axis=1))

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, g: Genomes) -> BatchResult:
        arch, L, D = self.arch, self.L, self.D
        T = g.T.astype(float)
        S = (g.SX * g.SY).astype(float)
        B = T.shape[0]
        # loop position, outer -> inner: level 0 first; inside a level the highest rank is outermost
        pos = np.arange(L)[None, :, None] * D + (D - 1 - g.rank)
        TS = T * S
        box_ge = np.ones((B, L + 1, D))
        for i in range(L - 1, -1, -1):
            box_ge[:, i] = box_ge[:, i + 1] * TS[:, i]
        s_lvl = np.prod(S, axis=2)                     # (B, L) spatial instances created at each level
        inst_lt = np.ones((B, L + 1))
        for i in range(L):
            inst_lt[:, i + 1] = inst_lt[:, i] * s_lvl[:, i]
        macs = float(self.problem.macs)
        reads = np.zeros((B, L))
        fills = np.zeros((B, L))
        updates = np.zeros((B, L))
        used = np.zeros((B, L))
        for s, ds in enumerate(self.problem.data_spaces):
            ks = self.keepers[s]
            for p, k in enumerate(ks):
                child = ks[p + 1] if p + 1 < len(ks) else L
                used[:, k] += self._extent(s, box_ge[:, k])
                k_inst = inst_lt[:, k]
                if child == L:
                    # operands read every cycle; multicast / spatial reduction over spatial loops below level k
                    sp_box = np.prod(S[:, k:, :], axis=1)
                    group = k_inst * np.prod(T.reshape(B, -1), axis=1)
                    lv_k = arch.levels[k]
                    if ds.read_write:
                        distinct = self._distinct(s, box_ge[:, k], T, k) * k_inst
                        upd = group * self._extent(s, sp_box) if lv_k.spatial_reduction else np.full(B, macs)
                        updates[:, k] += upd
                        reads[:, k] += upd - distinct
                    else:
                        reads[:, k] += group * self._extent(s, sp_box) if lv_k.multicast else macs
                    continue
                tile_c = box_ge[:, child]
                between = np.prod(S[:, k:child, :], axis=1)
                c_inst = k_inst * np.prod(between, axis=1)
                tile_u = tile_c * between
                v_c = self._fills(s, tile_c, T, pos, child)
                v_u = self._fills(s, tile_u, T, pos, child)
                lv_k = arch.levels[k]
                if ds.read_write:
                    d_c = self._distinct(s, tile_c, T, child)
                    d_u = self._distinct(s, tile_u, T, child)
                    fc = (v_c - d_c) * c_inst
                    fills[:, child] += fc
                    reads[:, k] += (v_u - d_u) * k_inst if lv_k.multicast else fc
                    updates[:, k] += v_u * k_inst if lv_k.spatial_reduction else v_c * c_inst
                    if p + 2 < len(ks):
                        reads[:, child] += v_c * c_inst
                else:
                    fc = v_c * c_inst
                    fills[:, child] += fc
                    reads[:, k] += v_u * k_inst if lv_k.multicast else fc
        sx = np.prod(g.SX, axis=2).astype(float)
        sy = np.prod(g.SY, axis=2).astype(float)
        both = ((g.SX > 1) & (g.SY > 1)).any(axis=(1, 2))  # one dimension on both axes of a level
        valid = ((sx <= self.fan[None, :, 0]) & (sy <= self.fan[None, :, 1]) & (used <= self.cap[None, :])).all(axis=1)
        valid &= ~both
        cycles = np.prod(T.reshape(B, -1), axis=1)
        energy = np.full(B, macs * arch.compute.energy_pj)
        leak = np.zeros(B)
        for i, lv in enumerate(arch.levels):
            inst = max(1, lv.instances)
            if lv.read_bandwidth:
                cycles = np.maximum(cycles, reads[:, i] / inst / lv.read_bandwidth)
            if lv.write_bandwidth:
                cycles = np.maximum(cycles, (fills[:, i] + updates[:, i]) / inst / lv.write_bandwidth)
            if lv.dummy:
                continue
            energy += (reads[:, i] * lv.e("read") + fills[:, i] * lv.e("write")
                       + updates[:, i] * lv.e("update")) / lv.block_size
            leak += lv.leak_pj_per_cycle * lv.instances
        return BatchResult(cycles, energy + leak * cycles, valid)

    # -- conversions ---------------------------------------------------------------------------------------
    def to_mapping(self, g: Genomes, b: int) -> LoopMapping:
        levels = []
        for i in range(self.L):
            order = np.argsort(g.rank[b, i], kind="stable")
            levels.append(LevelMapping(
                temporal={d: int(g.T[b, i, j]) for j, d in enumerate(self.dims) if g.T[b, i, j] > 1},
                permutation="".join(self.dims[j] for j in order),
                spatial_x={d: int(g.SX[b, i, j]) for j, d in enumerate(self.dims) if g.SX[b, i, j] > 1},
                spatial_y={d: int(g.SY[b, i, j]) for j, d in enumerate(self.dims) if g.SY[b, i, j] > 1},
                keep=self.keep[i]))
        return LoopMapping(levels=tuple(levels))

    def from_mapping(self, m: LoopMapping) -> Genomes:
        """One mapping as a batch of one (single-character dimension names, as Timeloop's)."""
        L, D = self.L, self.D
        T, SX, SY = (np.ones((1, L, D), dtype=np.int64) for _ in range(3))
        rank = np.zeros((1, L, D), dtype=np.int64)
        for i, lm in enumerate(m.levels):
            for j, d in enumerate(self.dims):
                T[0, i, j] = int(lm.temporal.get(d, 1))
                SX[0, i, j] = int(lm.spatial_x.get(d, 1))
                SY[0, i, j] = int(lm.spatial_y.get(d, 1))
            perm = [c for c in lm.permutation if c in self.dims]
            inner_first = perm + [d for d in self.dims if d not in perm]
            for r, d in enumerate(inner_first):
                rank[0, i, self.dims.index(d)] = r
        return Genomes(T, SX, SY, rank)


__all__ = ["BatchEvaluator", "BatchResult", "Genomes"]
