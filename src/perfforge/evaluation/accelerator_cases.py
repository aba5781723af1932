"""Accelerator ground truth for the evaluation harness: the real tools' outputs on the same inputs.

- ``scalesim``: SCALE-Sim 3.0.0's compute cycles for ResNet-50 layer shapes on square arrays and dataflows
  (``data/accelerators/scalesim/reference_outputs.jsonl``, produced by running the real tool; see its README),
  against perfforge's systolic model.
- ``timeloop``: Timeloop's published outputs for the Eyeriss-like VGG02 layer 5 tutorial mapping
  (``data/accelerators/timeloop/reference_outputs.yaml``): cycles, total energy and energy per component,
  against perfforge's loop-nest model evaluating the same Timeloop input files.

Values are cycles or picojoules, not seconds; the harness compares ratios, so the unit only names the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def scalesim_cases(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        ref = json.loads(line)
        shape = "x".join(map(str, ref["shape"]))
        out.append({"id": f"scalesim/{ref['array']}x{ref['array']}/{ref['dataflow']}/{shape}",
                    "shape": ref["shape"], "array": ref["array"], "dataflow": ref["dataflow"],
                    "layer": ref.get("example_layer", ""), "measured": float(ref["printed"]["Compute cycles"])})
    return out


def predict_scalesim(case: dict[str, Any]) -> float:
    from perfforge.accelerators.systolic import SystolicArraySpec, simulate
    from perfforge.accelerators.topology import ConvLayer

    res = simulate([ConvLayer("x", *case["shape"])],
                   SystolicArraySpec(rows=case["array"], cols=case["array"], dataflow=case["dataflow"]))
    return float(res.compute_cycles[0])


def timeloop_cases(path: Path) -> list[dict[str, Any]]:
    from perfforge.core.files import read_yaml

    doc = read_yaml(path, "Timeloop reference outputs")
    folder = str(path.parent)
    base = {"folder": folder, "inputs": doc["inputs"], "tool": doc["tool"]}
    cases = [{**base, "id": "timeloop/vgg02_layer5/cycles", "metric": "cycles", "measured": float(doc["cycles"])},
             {**base, "id": "timeloop/vgg02_layer5/energy_pj", "metric": "energy_pj",
              "measured": float(doc["energy_uj"]) * 1e6}]
    for comp, fj in doc["energy_per_mac_fj"].items():
        cases.append({**base, "id": f"timeloop/vgg02_layer5/energy_pj/{comp}", "metric": f"energy_pj/{comp}",
                      "measured": float(fj) * 1e-3 * float(doc["macs"])})
    return cases


def predict_timeloop(case: dict[str, Any]) -> float:
    from perfforge.accelerators.nest import evaluate
    from perfforge.accelerators.timeloop_io import load

    arch, problem, mapping, _ = load([Path(case["folder"]) / f for f in case["inputs"]])
    ev = evaluate(arch, mapping, problem)
    metric = case["metric"]
    if metric == "cycles":
        return float(ev.cycles)
    if metric == "energy_pj":
        return float(ev.energy_pj)
    comp = metric.split("/", 1)[1]
    if comp not in ev.energy_breakdown_pj:
        raise KeyError(f"no component '{comp}' in perfforge's breakdown ({', '.join(ev.energy_breakdown_pj)})")
    return float(ev.energy_breakdown_pj[comp])
