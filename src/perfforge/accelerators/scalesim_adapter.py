"""Write SCALE-Sim 3.0.0 inputs from perfforge's description and run the real tool when it is importable.

SCALE-Sim is optional (``pip install scalesim==3.0.0 'numpy<=2.2'``; numpy 2.4 crashes after the first layer).
Without it, ``run`` raises a ConfigError that says so; nothing falls back silently.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from typing import Any

from perfforge.accelerators.systolic import SystolicArraySpec
from perfforge.accelerators.topology import ConvLayer, to_csv
from perfforge.core.errors import ConfigError
from perfforge.core.files import write_atomic

# One config template for this adapter and for data/accelerators/scalesim/run_reference.py (which runs in
# SCALE-Sim's own environment and reads the file directly): CALC interface bandwidth, as the reference runs.
CONFIG_TEMPLATE = (Path(__file__).resolve().parent.parent / "data" / "accelerators" / "scalesim"
                   / "scale.cfg.template").read_text(encoding="utf-8")


def available() -> bool:
    return importlib.util.find_spec("scalesim") is not None


def write_inputs(layers: list[ConvLayer], array: SystolicArraySpec, folder: str | Path, run_name: str = "perfforge") -> dict[str, Path]:
    """Topology CSV, config (CALC interface bandwidth, as the reference runs) and the layout file 3.0.0 requires."""
    out = Path(folder)
    paths = {"topology": out / "topology.csv", "config": out / "scale.cfg", "layout": out / "layout.csv"}
    write_atomic(paths["topology"], to_csv(layers))
    write_atomic(paths["config"], CONFIG_TEMPLATE.format(
        run_name=run_name, rows=array.rows, cols=array.cols, dataflow=array.dataflow,
        ifmap_kib=array.ifmap_sram_bytes // 1024, filter_kib=array.filter_sram_bytes // 1024,
        ofmap_kib=array.ofmap_sram_bytes // 1024))
    # scalesim 3.0.0 always opens a layout file; with custom layouts off its contents are unused
    write_atomic(paths["layout"], "Layer name, unused,\n" + "".join(f"{lay.name},1,\n" for lay in layers))
    return paths


def run(layers: list[ConvLayer], array: SystolicArraySpec, folder: str | Path) -> list[dict[str, Any]]:
    """Run the real SCALE-Sim on the layers; return its per-layer compute cycles from COMPUTE_REPORT.csv."""
    if not available():
        raise ConfigError("SCALE-Sim is not installed: pip install scalesim==3.0.0 'numpy<=2.2' "
                          "(perfforge's own model needs neither: `perfforge accel systolic`)")
    from scalesim.scale_sim import scalesim  # type: ignore[import-not-found]

    paths = write_inputs(layers, array, folder)
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(paths["config"]),
                       topology=str(paths["topology"]), layout=str(paths["layout"]))
        sim.run_scale(top_path=str(folder))
    report = Path(folder) / "perfforge" / "COMPUTE_REPORT.csv"
    rows = report.read_text().splitlines()
    header = [h.strip() for h in rows[0].split(",")]
    out = []
    for lay, line in zip(layers, rows[1:]):
        vals = dict(zip(header, (v.strip() for v in line.split(","))))
        out.append({"layer": lay.name, "compute_cycles": int(float(vals["Total Cycles"])),
                    "utilization": float(vals["Overall Util %"]) / 100})
    return out
