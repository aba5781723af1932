"""Export perfforge's architecture / problem / mapping / energies as Timeloop v0.4 YAML; run Timeloop if present.

``export`` writes ``arch.yaml`` (a v0.4 ``subtree`` with one ``local`` component per level: ``DRAM``,
``SRAM`` / ``regfile``, ``dummy_storage`` for fan-out points, ``intmac`` for the MACs), ``problem.yaml``
(dimensions, data-space projections with named coefficients), ``ERT.yaml`` (the per-action energies perfforge
uses, so Timeloop need not run Accelergy) and, given a mapping, ``map.yaml``. ``timeloop_io.load`` reads these
files back to the same architecture, problem and mapping (tested: identical cycles and energy).

``run`` calls ``timeloop-model`` (or ``timeloop-mapper``) when it is on PATH and parses the summary of its
``*.stats.txt``; when it is absent it raises a ConfigError saying so. Nothing falls back silently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from perfforge.accelerators.arch import Architecture, LoopMapping
from perfforge.accelerators.mapper import mapping_to_timeloop
from perfforge.accelerators.problem import Problem
from perfforge.core.errors import ConfigError
from perfforge.core.files import write_atomic

TOOLS = ("timeloop-model", "timeloop-mapper")


def _comp_name(name: str, n: int) -> str:
    return f"{name}[1..{n}]"


def arch_doc(arch: Architecture) -> dict[str, Any]:
    local: list[dict[str, Any]] = []
    for lv in arch.levels:
        attrs: dict[str, Any] = {"meshX": lv.mesh_x, "meshY": lv.mesh_y, "width": lv.width_bits,
                                 "datawidth": lv.word_bits}
        if lv.dummy:
            cls = "dummy_storage"
        elif lv.depth is None:
            cls = "DRAM"
        else:
            cls = "SRAM" if lv.capacity_words * lv.word_bits > 8 * 1024 * 8 else "regfile"
            attrs["depth"] = lv.depth
        if lv.read_bandwidth is not None:
            attrs["read_bandwidth"] = lv.read_bandwidth
        if lv.write_bandwidth is not None:
            attrs["write_bandwidth"] = lv.write_bandwidth
        local.append({"name": _comp_name(lv.name, lv.instances), "class": cls, "attributes": attrs})
    c = arch.compute
    local.append({"name": _comp_name(c.name, c.instances), "class": "intmac",
                  "attributes": {"meshX": c.mesh_x, "meshY": c.mesh_y, "datawidth": arch.levels[-1].word_bits}})
    return {"architecture": {"version": "0.4", "subtree": [{
        "name": arch.name, "attributes": {"version": "0.4", "technology": arch.technology or "unknown",
                                          "global_cycle_seconds": arch.cycle_s},
        "local": local}]}}


def ert_doc(arch: Architecture) -> dict[str, Any]:
    tables = []
    for lv in arch.levels:
        if lv.dummy:
            continue
        acts = [{"name": a, "energy": lv.e(a)} for a in ("read", "write", "update")]
        acts.append({"name": "leak", "energy": lv.leak_pj_per_cycle})
        tables.append({"name": f"{arch.name}.{_comp_name(lv.name, lv.instances)}", "actions": acts})
    c = arch.compute
    tables.append({"name": f"{arch.name}.{_comp_name(c.name, c.instances)}",
                   "actions": [{"name": "compute", "energy": c.energy_pj}, {"name": "leak", "energy": c.leak_pj_per_cycle}]})
    return {"ERT": {"version": "0.4", "tables": tables}}


def problem_doc(problem: Problem) -> dict[str, Any]:
    coeffs: dict[int, str] = {}
    spaces = []
    for ds in problem.data_spaces:
        proj = []
        for terms in ds.projection:
            out = []
            for d, c in terms:
                if c == 1:
                    out.append([d])
                else:
                    out.append([d, coeffs.setdefault(c, f"coef{c}")])
            proj.append(out)
        spaces.append({"name": ds.name, "projection": proj, "read_write": ds.read_write})
    return {"problem": {"version": "0.4", "shape": {
        "name": problem.name, "dimensions": list(problem.dims),
        "coefficients": [{"name": n, "default": c} for c, n in coeffs.items()], "data_spaces": spaces},
        "instance": dict(problem.dims)}}


def export(arch: Architecture, problem: Problem, mapping: LoopMapping | None, folder: str | Path) -> dict[str, Path]:
    """Write Timeloop v0.4 inputs; returns their paths (``map`` only when a mapping is given)."""
    out = Path(folder)
    docs = {"arch": arch_doc(arch), "problem": problem_doc(problem), "ERT": ert_doc(arch)}
    if mapping is not None:
        docs["map"] = {"mapping": mapping_to_timeloop(arch, problem, mapping)}
    paths = {}
    for k, doc in docs.items():
        paths[k] = out / f"{k}.yaml"
        write_atomic(paths[k], yaml.safe_dump(doc, sort_keys=False))
    return paths


def available(tool: str = "timeloop-model") -> str | None:
    return shutil.which(tool)


_STAT = {"cycles": re.compile(r"^\s*Cycles:\s*([0-9.eE+]+)", re.M),
         "energy_uj": re.compile(r"^\s*Energy:\s*([0-9.eE+]+)\s*uJ", re.M),
         "utilization_pct": re.compile(r"^\s*Utilization:\s*([0-9.eE+]+)\s*%", re.M)}


def parse_stats(text: str) -> dict[str, float]:
    """Cycles, energy (uJ) and utilisation from the ``Summary Stats`` of a Timeloop ``*.stats.txt``."""
    i = text.find("Summary Stats")
    if i < 0:
        raise ConfigError("Timeloop stats have no 'Summary Stats' section")
    body = text[i:]
    out: dict[str, float] = {}
    for k, rx in _STAT.items():
        m = rx.search(body)
        if m:
            out[k] = float(m.group(1))
    if "cycles" not in out or "energy_uj" not in out:
        raise ConfigError("Timeloop stats: no 'Cycles:' or 'Energy: ... uJ' line in the summary")
    return out


def run(paths: dict[str, Path], tool: str = "timeloop-model", timeout_s: float = 600.0) -> dict[str, float]:
    """Run Timeloop on exported inputs; its summary stats. ConfigError when the tool is not on PATH."""
    if tool not in TOOLS:
        raise ConfigError(f"tool must be one of {', '.join(TOOLS)}, got '{tool}'")
    exe = available(tool)
    if exe is None:
        raise ConfigError(f"{tool} is not on PATH: install Timeloop (github.com/NVlabs/timeloop) to cross-check; "
                          "perfforge's own model needs nothing (`perfforge accel evaluate`)")
    if tool == "timeloop-model" and "map" not in paths:
        raise ConfigError("timeloop-model needs a mapping: export with one")
    files = [str(p) for k, p in paths.items() if k != "map" or tool == "timeloop-model"]
    folder = Path(files[0]).parent
    proc = subprocess.run([exe, *files], cwd=folder, capture_output=True, text=True, timeout=timeout_s)
    stats = folder / f"{tool}.stats.txt"
    if proc.returncode != 0 or not stats.exists():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"{tool} failed (exit {proc.returncode}): {last[0]}")
    return parse_stats(stats.read_text())


__all__ = ["TOOLS", "arch_doc", "available", "ert_doc", "export", "parse_stats", "problem_doc", "run"]
