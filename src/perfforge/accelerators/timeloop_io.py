"""Read Timeloop v0.4 input specs (architecture, problem, mapping, ERT) as used by timeloop-accelergy-exercises.

Accepts one or more YAML files; their top-level keys are merged (``architecture``, ``problem``, ``mapping``,
``ERT``, ``architecture_constraints``, ``mapper``...), as Timeloop itself does. Components named ``X[1..N]``
have ``N`` instances laid out ``meshX * meshY``; ``dummy_storage`` components are fan-out points; the
component whose class mentions ``mac`` (or that has no ``depth``/``width``) is the MAC level.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from perfforge.accelerators.arch import Architecture, ComputeLevel, LevelMapping, LoopMapping, StorageLevel
from perfforge.accelerators.problem import DataSpace, Problem
from perfforge.core.errors import ConfigError
from perfforge.core.files import read_yaml

_NAME = re.compile(r"^(?P<base>[^\[]+)(\[(?P<lo>\d+)\.\.(?P<hi>\d+)\])?$")


def load_specs(paths: list[str | Path]) -> dict[str, Any]:
    if not paths:
        raise ConfigError("give at least one Timeloop spec file (--timeloop-spec FILE.yaml)")
    merged: dict[str, Any] = {}
    for p in paths:
        doc = read_yaml(p, "Timeloop spec")
        if not isinstance(doc, dict):
            raise ConfigError(f"{p}: expected a YAML mapping at the top level")
        for k, v in doc.items():
            if k == "mapping" and v in ([], None) and "mapping" in merged:
                continue  # the front end's dump carries an empty mapping list
            merged[k] = v
    return merged


def _split_name(name: str) -> tuple[str, int]:
    m = _NAME.match(str(name).strip())
    if not m:
        raise ConfigError(f"Timeloop component name '{name}' is not NAME or NAME[1..N]")
    n = int(m.group("hi")) - int(m.group("lo")) + 1 if m.group("hi") else 1
    return m.group("base"), n


def _ert_lookup(ert: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not ert:
        return out
    for table in ert.get("ERT", ert).get("tables", []):
        base = str(table["name"]).split("[")[0].split(".")[-1]
        acts: dict[str, float] = {}
        for a in table.get("actions", []):
            acts.setdefault(a["name"], float(a["energy"]))
        out[base] = acts
    return out


def parse_architecture(spec: dict[str, Any], ert: dict[str, dict[str, float]] | None = None) -> Architecture:
    arch = spec.get("architecture")
    if not isinstance(arch, dict):
        raise ConfigError("Timeloop spec has no 'architecture' section")
    ert = ert if ert is not None else _ert_lookup(spec.get("ERT") and {"ERT": spec["ERT"]})
    comps: list[dict[str, Any]] = []
    top_attrs: dict[str, Any] = {}

    def walk(node: dict[str, Any], inherited: dict[str, Any]) -> None:
        attrs = {**inherited, **(node.get("attributes") or {})}
        if not top_attrs:
            top_attrs.update(attrs)
        for c in node.get("local", []) or []:
            comps.append({**c, "attributes": {**attrs, **(c.get("attributes") or {})}})
        for sub in node.get("subtree", []) or []:
            walk(sub, attrs)

    if "subtree" in arch:
        for sub in arch["subtree"]:
            walk(sub, {})
    else:
        raise ConfigError("only Timeloop v0.4 'subtree' architectures are supported")
    levels: list[StorageLevel] = []
    compute: ComputeLevel | None = None
    for c in comps:
        base, n = _split_name(c["name"])
        a = c["attributes"]
        cls = str(c.get("class", ""))
        mx = int(a.get("meshX", 1))
        if "mac" in cls.lower() or ("depth" not in a and "width" not in a and cls != "DRAM"):
            e = ert.get(base, {})
            compute = ComputeLevel(name=base, instances=n, mesh_x=mx, mesh_y=max(1, n // mx),
                                   energy_pj=e.get("compute", e.get("mac_random", 0.0)),
                                   leak_pj_per_cycle=e.get("leak", 0.0))
            continue
        dummy = cls == "dummy_storage"
        word = int(a.get("datawidth", a.get("word-bits", 8)))
        width = int(a.get("width", word))
        depth = a.get("depth")
        if cls == "DRAM":
            depth = None
        e = ert.get(base, {})
        levels.append(StorageLevel(
            name=base, instances=n, mesh_x=mx, mesh_y=max(1, n // mx), depth=None if depth is None else int(depth),
            width_bits=width, word_bits=word,
            read_bandwidth=float(a["read_bandwidth"]) if "read_bandwidth" in a else None,
            write_bandwidth=float(a["write_bandwidth"]) if "write_bandwidth" in a else None,
            energy_pj={k: v for k, v in e.items() if k in ("read", "write", "update")},
            leak_pj_per_cycle=e.get("leak", 0.0), dummy=dummy))
    if compute is None:
        raise ConfigError("Timeloop architecture has no MAC (compute) component")
    tech = str(top_attrs.get("technology", ""))
    return Architecture(name=str(arch["subtree"][0].get("name", "timeloop")), levels=tuple(levels), compute=compute,
                        cycle_s=float(top_attrs.get("global_cycle_seconds", 1e-9)), technology=tech,
                        source="Timeloop v0.4 spec")


def parse_problem(spec: dict[str, Any]) -> Problem:
    prob = spec.get("problem")
    if not isinstance(prob, dict):
        raise ConfigError("Timeloop spec has no 'problem' section")
    inst = prob.get("instance") or {}
    shape = prob.get("shape") or {}
    dims_list = shape.get("dimensions")
    if not dims_list:
        raise ConfigError("Timeloop problem needs shape.dimensions")
    coeffs = {c["name"]: int(inst.get(c["name"], c.get("default", 1))) for c in shape.get("coefficients", [])}
    dims = {d: int(inst.get(d, 1)) for d in dims_list}
    spaces = []
    for ds in shape.get("data_spaces", []) or shape.get("data-spaces", []):
        proj = []
        for dim_terms in ds["projection"]:
            terms = []
            for term in dim_terms:
                if not isinstance(term, list):
                    term = [term]
                d = term[0]
                c = coeffs[term[1]] if len(term) > 1 else 1
                terms.append((d, c))
            proj.append(tuple(terms))
        spaces.append(DataSpace(ds["name"], tuple(proj), bool(ds.get("read_write", ds.get("read-write", False)))))
    return Problem(str(shape.get("name", "problem")), dims, tuple(spaces))


def _factors(text: Any, dims: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    if not text:
        return out
    for tok in re.findall(r"([A-Za-z]+)\s*=?\s*(\d+)", str(text)):
        if tok[0] not in dims:
            raise ConfigError(f"mapping factor names unknown dimension '{tok[0]}' (dimensions: {', '.join(dims)})")
        out[tok[0]] = int(tok[1])
    return out


def parse_mapping(spec: dict[str, Any], arch: Architecture, problem: Problem) -> LoopMapping:
    entries = spec.get("mapping")
    if not entries:
        raise ConfigError("Timeloop spec has no mapping (pass the .map.yaml file too)")
    dims = list(problem.dims)
    per: dict[int, dict[str, Any]] = {i: {"temporal": {}, "perm": "", "sx": {}, "sy": {}, "keep": None}
                                      for i in range(len(arch.levels))}
    for e in entries:
        i = arch.index(str(e["target"]))
        kind = e.get("type")
        if kind == "datatype":
            per[i]["keep"] = frozenset(e.get("keep") or [])
        elif kind == "temporal":
            per[i]["temporal"] = _factors(e.get("factors"), dims)
            per[i]["perm"] = str(e.get("permutation", ""))
        elif kind == "spatial":
            f = _factors(e.get("factors"), dims)
            perm = [c for c in str(e.get("permutation", "")) if c in dims] or dims
            split = int(e.get("split", len(perm)))
            # Timeloop: dimensions before `split` in the permutation go to X, the rest to Y
            per[i]["sx"] = {d: f.get(d, 1) for d in perm[:split] if f.get(d, 1) > 1}
            per[i]["sy"] = {d: f.get(d, 1) for d in perm[split:] if f.get(d, 1) > 1}
        else:
            raise ConfigError(f"mapping entry for '{e['target']}' has type '{kind}' (allowed: temporal, spatial, datatype)")
    levels = tuple(LevelMapping(temporal=p["temporal"], permutation=p["perm"], spatial_x=p["sx"], spatial_y=p["sy"],
                                keep=p["keep"]) for p in (per[i] for i in range(len(arch.levels))))
    return LoopMapping(levels=levels)


def load(paths: list[str | Path], *, need_mapping: bool = True) -> tuple[Architecture, Problem, LoopMapping | None, dict]:
    spec = load_specs(paths)
    ert = _ert_lookup({"ERT": spec["ERT"]}) if "ERT" in spec else {}
    if not ert:
        raise ConfigError("no energy reference table: pass Timeloop's ERT.yaml with --timeloop-spec")
    arch = parse_architecture(spec, ert)
    prob = parse_problem(spec)
    mapping = parse_mapping(spec, arch, prob) if (need_mapping or spec.get("mapping")) else None
    return arch, prob, mapping, spec
