"""Architecture presets (Eyeriss-, Simba-, NVDLA-, TPU-like) shipped as validated YAML, priced by an energy table.

A preset file (``perfforge/data/accelerators/presets/<id>.yaml``) lists storage levels outermost first, each
``dram | sram | regfile | fanout`` with its size, width, bandwidth and the data it keeps (``weights``,
``inputs``, ``outputs``: roles that map onto any problem's data spaces), plus the MAC array. Numbers may be
arithmetic in the preset's ``parameters`` (the TPU-like array side ``N``). Energies come from
``technology.load_table(preset.technology)``: SRAM / register-file energy by size, DRAM per bit, MAC by
precision, and leakage where the table has it. Every problem is a one-line ``ConfigError``.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from perfforge.accelerators.arch import Architecture, ComputeLevel, StorageLevel
from perfforge.accelerators.mapper import LevelConstraint, free_constraints
from perfforge.accelerators.problem import Problem
from perfforge.accelerators.technology import EnergyTable, load_table, storage_energy
from perfforge.core.errors import ConfigError, suggest
from perfforge.core.files import load_packaged, packaged_yaml_names

ROLES = ("weights", "inputs", "outputs")
# data-space names of perfforge's problems (problem.conv, problem.gemm) -> role
ROLE_OF = {"Weights": "weights", "Inputs": "inputs", "Outputs": "outputs", "A": "inputs", "B": "weights",
           "Z": "outputs"}
Num = int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    default: int
    min: int
    max: int
    help: str = ""


class LevelSpec(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["dram", "sram", "regfile", "fanout"]
    instances: Num = 1
    mesh_x: Num | None = None
    depth: Num | None = None
    width_bits: Num = 8
    word_bits: Num = 8
    read_bandwidth: Num | None = None
    write_bandwidth: Num | None = None
    keep: list[Literal["weights", "inputs", "outputs"]] | None = None


class ComputeSpec(_Strict):
    instances: Num
    mesh_x: Num | None = None


class PresetSpec(_Strict):
    id: str
    description: str = Field(min_length=1)
    source: str = Field(min_length=1)
    technology: str
    precision: str = "int8"
    cycle_s: float = Field(gt=0)
    parameters: dict[str, Parameter] = {}
    levels: list[LevelSpec] = Field(min_length=1)
    compute: ComputeSpec


@dataclass(frozen=True, slots=True)
class Preset:
    id: str
    description: str
    source: str
    arch: Architecture
    table: EnergyTable
    keep_roles: tuple[frozenset[str] | None, ...]
    energy_notes: tuple[str, ...]
    parameters: dict[str, int]

    def keep_for(self, problem: Problem) -> list[frozenset[str] | None]:
        out: list[frozenset[str] | None] = []
        for roles, lv in zip(self.keep_roles, self.arch.levels):
            if lv.dummy or roles is None:
                out.append(None if not lv.dummy else frozenset())
                continue
            out.append(frozenset(ds.name for ds in problem.data_spaces if ROLE_OF.get(ds.name, "") in roles))
        return out

    def constraints(self, problem: Problem) -> list[LevelConstraint]:
        """Free loop factors and orders; only what each level keeps is fixed by the preset."""
        free = free_constraints(self.arch, problem)
        return [LevelConstraint(fixed_temporal=c.fixed_temporal, temporal_perm=c.temporal_perm, x_dims=c.x_dims,
                                y_dims=c.y_dims, fixed_spatial=c.fixed_spatial, keep=k)
                for c, k in zip(free, self.keep_for(problem))]


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}


def _num(v: Num | None, params: dict[str, int], where: str) -> float | None:
    """A number, or arithmetic (+ - * / // **) over the preset's parameters."""
    if v is None or isinstance(v, (int, float)):
        return v

    def ev(n: ast.AST) -> float:
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return n.value
        if isinstance(n, ast.Name) and n.id in params:
            return params[n.id]
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        raise ConfigError(f"{where}: '{v}' is not arithmetic over the parameters ({', '.join(params) or 'none'})")
    try:
        tree = ast.parse(str(v), mode="eval")
    except SyntaxError:
        raise ConfigError(f"{where}: '{v}' is not arithmetic over the parameters ({', '.join(params) or 'none'})") \
            from None
    return ev(tree)


def _int(v: Num | None, params: dict[str, int], where: str) -> int | None:
    x = _num(v, params, where)
    if x is None:
        return None
    if float(x) != int(x):
        raise ConfigError(f"{where}: must be a whole number, got {x:g}")
    return int(x)


def list_presets() -> list[str]:
    return packaged_yaml_names("data/accelerators/presets")


@functools.lru_cache(maxsize=None)
def load_spec(preset_id: str) -> PresetSpec:
    return load_packaged("data/accelerators/presets", preset_id, PresetSpec, "architecture preset")


def _array_param(spec: PresetSpec, array: str | None) -> dict[str, int]:
    params = {k: p.default for k, p in spec.parameters.items()}
    if array is None:
        return params
    if "N" not in spec.parameters:
        raise ConfigError(f"preset '{spec.id}' has a fixed size; --array applies to: "
                          f"{', '.join(p for p in list_presets() if 'N' in load_spec(p).parameters)}")
    p = spec.parameters["N"]
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", array)
    if not m or m.group(1) != m.group(2) or not p.min <= int(m.group(1)) <= p.max:
        raise ConfigError(f"--array for '{spec.id}' must be NxN with N in {p.min}..{p.max}, got '{array}'")
    params["N"] = int(m.group(1))
    return params


def build(preset_id: str, *, array: str | None = None, technology: str | None = None) -> Preset:
    """The preset as an ``Architecture`` priced by its (or the given) energy table."""
    spec = load_spec(preset_id)
    params = _array_param(spec, array)
    table = load_table(technology or spec.technology)
    mac_pj = table.mac_pj(spec.precision)
    notes: list[str] = [f"MAC ({spec.precision}): {mac_pj:g} pJ; {table.mac[spec.precision].source}"]
    if not table.models_leakage:
        notes.append(f"leakage not modelled: {table.leakage_note.strip()}")
    levels: list[StorageLevel] = []
    for lv in spec.levels:
        w = f"preset {preset_id}: level '{lv.name}'"
        n = _int(lv.instances, params, w) or 1
        mx = _int(lv.mesh_x, params, w) or n
        if mx < 1 or n % mx:
            raise ConfigError(f"{w}: mesh_x ({mx}) must divide instances ({n})")
        width = _int(lv.width_bits, params, w) or 8
        word = _int(lv.word_bits, params, w) or 8
        depth = _int(lv.depth, params, w)
        energy: dict[str, float] = {}
        leak = 0.0
        if lv.kind == "dram":
            e = table.dram.pj_per_bit * width
            energy = {"read": e, "write": e, "update": e}
            notes.append(f"{lv.name}: {e:g} pJ per {width}-bit access ({table.dram.source})")
            depth = None
        elif lv.kind in ("sram", "regfile"):
            if depth is None or depth < 1:
                raise ConfigError(f"{w}: a {lv.kind} needs depth >= 1")
            se = storage_energy(table, depth * width / 8, width)
            energy = {"read": se.read_pj, "write": se.write_pj, "update": se.write_pj}
            leak = se.leak_pj_per_cycle
            notes.append(f"{lv.name}: {depth * width / 8:g} B, read {se.read_pj:.4g} / write {se.write_pj:.4g} pJ per "
                         f"{width}-bit access, leak {leak:.3g} pJ/cycle ({se.how}, {table.id})")
        levels.append(StorageLevel(
            name=lv.name, instances=n, mesh_x=mx, mesh_y=n // mx, depth=depth, width_bits=width, word_bits=word,
            read_bandwidth=_num(lv.read_bandwidth, params, w), write_bandwidth=_num(lv.write_bandwidth, params, w),
            energy_pj=energy, leak_pj_per_cycle=leak, dummy=lv.kind == "fanout"))
    w = f"preset {preset_id}: compute"
    cn = _int(spec.compute.instances, params, w) or 1
    cmx = _int(spec.compute.mesh_x, params, w) or cn
    if cn % cmx:
        raise ConfigError(f"{w}: mesh_x ({cmx}) must divide instances ({cn})")
    arch = Architecture(name=preset_id + (f"_{params['N']}x{params['N']}" if "N" in params else ""),
                        levels=tuple(levels),
                        compute=ComputeLevel(name="mac", instances=cn, mesh_x=cmx, mesh_y=cn // cmx, energy_pj=mac_pj,
                                             leak_pj_per_cycle=table.mac_leak_pj_per_cycle or 0.0),
                        cycle_s=spec.cycle_s, technology=table.technology, source=spec.source)
    keep = tuple(None if lv.keep is None else frozenset(lv.keep) for lv in spec.levels)
    return Preset(preset_id, spec.description, spec.source, arch, table, keep, tuple(notes), params)


def layer_problem(text: str) -> Problem:
    """``MODEL:LAYER`` (a zoo model at batch 1 and one of its conv / matmul layers) as a loop-nest problem."""
    from perfforge.accelerators.problem import from_op
    from perfforge.workload.op import OpKind
    from perfforge.workload.zoo import get_model

    if ":" not in text:
        raise ConfigError(f"--layer must be MODEL:LAYER, e.g. resnet50:layer1.0.1.conv, got '{text}'")
    model, layer = text.split(":", 1)
    wl = get_model(model, batch=1)
    ops = {op.name: op for op in wl.ops if op.kind in (OpKind.CONV2D, OpKind.MATMUL, OpKind.BMM)}
    if layer not in ops:
        names = list(ops)
        raise ConfigError(f"model '{model}' has no conv/matmul layer '{layer}' (e.g. {', '.join(names[:3])}, ... "
                          f"{len(names)} in all){suggest(layer, names)}")
    return from_op(ops[layer])


__all__ = ["Preset", "ROLES", "build", "layer_problem", "list_presets", "load_spec"]
