"""Accelerator architecture: a storage hierarchy (outermost first) over a MAC level, plus mappings.

Every level has ``instances`` copies laid out ``mesh_x * mesh_y``; the fan-out from a level to the next inner
level is the ratio of their instance counts (split into X and Y by their meshes). Capacities are in words
(``depth * width / word_bits``); ``block_size = width / word_bits`` words move per access (vector width), so
per-access energies are charged once per block, as Timeloop/Accelergy do. Energies are in pJ per action
(Accelergy's ERT unit) and leakage in pJ per cycle per instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from perfforge.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageLevel:
    name: str
    instances: int = 1
    mesh_x: int = 1
    mesh_y: int = 1
    depth: int | None = None          # entries; None = unbounded (DRAM)
    width_bits: int = 8               # bits per entry
    word_bits: int = 8
    read_bandwidth: float | None = None   # words per cycle per instance; None = unlimited
    write_bandwidth: float | None = None
    energy_pj: Mapping[str, float] = field(default_factory=dict)  # read / write / update per block access
    leak_pj_per_cycle: float = 0.0
    dummy: bool = False               # a pure fan-out point (Timeloop dummy_storage): holds nothing
    multicast: bool = True
    spatial_reduction: bool = True

    def __post_init__(self) -> None:
        if self.instances < 1 or self.mesh_x < 1 or self.mesh_y < 1:
            raise ConfigError(f"level '{self.name}': instances, mesh_x and mesh_y must be >= 1")
        if self.mesh_x * self.mesh_y != self.instances:
            raise ConfigError(f"level '{self.name}': mesh_x * mesh_y ({self.mesh_x}*{self.mesh_y}) must equal "
                              f"instances ({self.instances})")
        if self.word_bits <= 0 or self.width_bits <= 0:
            raise ConfigError(f"level '{self.name}': width_bits and word_bits must be > 0")

    @property
    def block_size(self) -> int:
        return max(1, self.width_bits // self.word_bits)

    @property
    def capacity_words(self) -> float:
        if self.dummy:
            return 0.0
        return math.inf if self.depth is None else self.depth * self.block_size

    def e(self, action: str) -> float:
        return float(self.energy_pj.get(action, 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeLevel:
    name: str = "mac"
    instances: int = 1
    mesh_x: int = 1
    mesh_y: int = 1
    energy_pj: float = 0.0            # per MAC
    leak_pj_per_cycle: float = 0.0    # not charged by Timeloop's reference outputs; kept for the breakdown


@dataclass(frozen=True, slots=True, kw_only=True)
class Architecture:
    name: str
    levels: tuple[StorageLevel, ...]  # outermost (DRAM) first
    compute: ComputeLevel
    cycle_s: float = 1e-9
    technology: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError(f"architecture '{self.name}': needs at least one storage level")
        names = [lv.name for lv in self.levels] + [self.compute.name]
        if len(set(names)) != len(names):
            raise ConfigError(f"architecture '{self.name}': level names must be unique, got {names}")
        prev = 1
        for lv in [*self.levels, self.compute]:
            if lv.instances % prev:
                raise ConfigError(f"architecture '{self.name}': level '{lv.name}' has {lv.instances} instances, "
                                  f"not a multiple of the {prev} above it")
            prev = lv.instances

    def index(self, name: str) -> int:
        for i, lv in enumerate(self.levels):
            if lv.name == name:
                return i
        known = ", ".join(lv.name for lv in self.levels)
        raise ConfigError(f"unknown storage level '{name}' (levels: {known})")

    def fanout(self, i: int) -> tuple[int, int]:
        """(X, Y) fan-out from storage level i to the next inner level (or the MACs)."""
        lv = self.levels[i]
        nxt = self.levels[i + 1] if i + 1 < len(self.levels) else self.compute
        fx = max(1, nxt.mesh_x // lv.mesh_x)
        fy = max(1, nxt.mesh_y // lv.mesh_y)
        if fx * fy != nxt.instances // lv.instances:
            fx, fy = nxt.instances // lv.instances, 1
        return fx, fy


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelMapping:
    """Loops of one storage level. Permutations are listed innermost first (Timeloop's convention)."""

    temporal: Mapping[str, int] = field(default_factory=dict)
    permutation: str = ""
    spatial_x: Mapping[str, int] = field(default_factory=dict)
    spatial_y: Mapping[str, int] = field(default_factory=dict)
    keep: frozenset[str] | None = None   # None: keep every data space (unless the level is dummy)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopMapping:
    levels: tuple[LevelMapping, ...]  # aligned with Architecture.levels


def ordered_temporal(lm: LevelMapping, dims: list[str]) -> list[tuple[str, int]]:
    """Temporal loops of a level, outermost first, factor-1 loops dropped."""
    perm = [c for c in lm.permutation if c in dims]
    rest = [d for d in dims if d not in perm]
    inner_first = perm + rest
    return [(d, int(lm.temporal.get(d, 1))) for d in reversed(inner_first) if int(lm.temporal.get(d, 1)) > 1]
