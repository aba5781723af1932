"""Per-action energy tables (Accelergy-style) for technology nodes, shipped as YAML with a source per number.

``perfforge/data/accelerators/energy/<id>.yaml`` holds, for one node: pJ per MAC by precision, storage
macros (register files, SRAMs) as ``(capacity, access width, read / write pJ per access, leakage)`` points,
and DRAM pJ per bit. ``storage_energy`` sizes any buffer from those points: energy *per bit accessed* is
interpolated log-log in capacity between the two nearest points (extrapolated from the end pair outside
them), then multiplied by the buffer's access width; leakage per bit the same way, or 0 with a note when the
source gives none.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from perfforge.core.errors import ConfigError
from perfforge.core.files import load_packaged, packaged_yaml_names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MacEnergy(_Strict):
    energy_pj: float = Field(gt=0)
    source: str = Field(min_length=1)


class StoragePoint(_Strict):
    name: str
    capacity_bytes: float = Field(gt=0)
    access_bits: int = Field(gt=0)
    read_pj: float = Field(ge=0)
    write_pj: float = Field(ge=0)
    leak_pj_per_cycle: float | None = Field(default=None, ge=0)
    source: str = Field(min_length=1)


class DramEnergy(_Strict):
    pj_per_bit: float = Field(gt=0)
    source: str = Field(min_length=1)


class EnergyTable(_Strict):
    id: str
    technology: str
    source: str = Field(min_length=1)
    mac: dict[str, MacEnergy]
    mac_leak_pj_per_cycle: float | None = Field(default=None, ge=0)
    storage: list[StoragePoint] = Field(min_length=2)
    dram: DramEnergy
    leakage_note: str = ""

    @model_validator(mode="after")
    def _sorted_distinct(self) -> "EnergyTable":
        caps = [p.capacity_bytes for p in self.storage]
        if len(set(caps)) != len(caps):
            raise ValueError("storage points must have distinct capacity_bytes")
        return self

    def mac_pj(self, precision: str) -> float:
        if precision not in self.mac:
            raise ConfigError(f"technology '{self.id}' has no MAC energy for precision '{precision}' "
                              f"(known: {', '.join(sorted(self.mac))})")
        return self.mac[precision].energy_pj

    @property
    def models_leakage(self) -> bool:
        return all(p.leak_pj_per_cycle is not None for p in self.storage)


@dataclass(frozen=True, slots=True)
class StorageEnergy:
    read_pj: float       # per access of the buffer's width
    write_pj: float
    leak_pj_per_cycle: float
    how: str             # "table point NAME", "interpolated between A and B", "extrapolated from A and B"


def list_tables() -> list[str]:
    return packaged_yaml_names("data/accelerators/energy")


@functools.lru_cache(maxsize=None)
def load_table(table_id: str) -> EnergyTable:
    return load_packaged("data/accelerators/energy", table_id, EnergyTable, "technology")


def _loglog(x: float, x0: float, y0: float, x1: float, y1: float) -> float:
    if y0 <= 0 or y1 <= 0:
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    slope = math.log(y1 / y0) / math.log(x1 / x0)
    return y0 * (x / x0) ** slope


def storage_energy(table: EnergyTable, capacity_bytes: float, width_bits: int) -> StorageEnergy:
    """Read/write energy per ``width_bits`` access and leakage per cycle of a buffer of ``capacity_bytes``."""
    if capacity_bytes <= 0 or width_bits <= 0:
        raise ConfigError(f"buffer capacity and width must be > 0, got {capacity_bytes} B, {width_bits} bits")
    pts = sorted(table.storage, key=lambda p: p.capacity_bytes)
    for p in pts:
        if p.capacity_bytes == capacity_bytes:
            k = width_bits / p.access_bits
            return StorageEnergy(p.read_pj * k, p.write_pj * k, p.leak_pj_per_cycle or 0.0,
                                 f"table point {p.name}")
    if capacity_bytes < pts[0].capacity_bytes:
        a, b, how = pts[0], pts[1], "extrapolated from"
    elif capacity_bytes > pts[-1].capacity_bytes:
        a, b, how = pts[-2], pts[-1], "extrapolated from"
    else:
        i = next(i for i, p in enumerate(pts) if p.capacity_bytes > capacity_bytes)
        a, b, how = pts[i - 1], pts[i], "interpolated between"

    def per_bit(f: str) -> float:
        ya, yb = getattr(a, f) / a.access_bits, getattr(b, f) / b.access_bits
        return _loglog(capacity_bytes, a.capacity_bytes, ya, b.capacity_bytes, yb)

    leak = 0.0
    if a.leak_pj_per_cycle is not None and b.leak_pj_per_cycle is not None:
        # leakage scales with the bits stored: per stored bit, interpolated the same way
        la = a.leak_pj_per_cycle / (a.capacity_bytes * 8)
        lb = b.leak_pj_per_cycle / (b.capacity_bytes * 8)
        leak = _loglog(capacity_bytes, a.capacity_bytes, la, b.capacity_bytes, lb) * capacity_bytes * 8
    return StorageEnergy(per_bit("read_pj") * width_bits, per_bit("write_pj") * width_bits, leak,
                         f"{how} {a.name} and {b.name}")


__all__ = ["EnergyTable", "StorageEnergy", "list_tables", "load_table", "storage_energy"]
