"""``perfforge accel``: systolic arrays (SCALE-Sim-compatible) and loop-nest mappings (Timeloop-compatible)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from perfforge.cli.main import app, console
from perfforge.core.errors import ConfigError

accel = typer.Typer(help="Accelerator dataflow models (systolic arrays, loop-nest mappings).", no_args_is_help=True)
app.add_typer(accel, name="accel")


@accel.command()
def systolic(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="zoo id (batch 1), e.g. resnet50"),
    topology: Optional[Path] = typer.Option(None, "--topology", help="SCALE-Sim conv topology CSV"),
    array: str = typer.Option("128x128", "--array", help="ROWSxCOLS"),
    dataflow: str = typer.Option("os", "--dataflow", help="ws | os | is"),
    sram_kib: int = typer.Option(64, "--sram-kib", help="each operand SRAM (KiB), as SCALE-Sim's config"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Compute cycles, utilisation and SRAM/DRAM demand of a network on a systolic array (SCALE-Sim 3.0.0 semantics)."""
    from perfforge.accelerators.systolic import SystolicArraySpec, check_dataflow, parse_array, simulate
    from perfforge.accelerators.topology import from_workload, read_csv

    rows, cols = parse_array(array)
    df = check_dataflow(dataflow)
    if (model is None) == (topology is None):
        raise ConfigError("give exactly one of --model ID or --topology FILE.csv")
    if topology is not None:
        layers = read_csv(topology)
    else:
        from perfforge.workload.zoo import get_model

        layers = from_workload(get_model(str(model), batch=1))
    if sram_kib <= 0:
        raise ConfigError(f"--sram-kib must be > 0, got {sram_kib}")
    spec = SystolicArraySpec(rows=rows, cols=cols, dataflow=df, ifmap_sram_bytes=sram_kib * 1024,
                             filter_sram_bytes=sram_kib * 1024, ofmap_sram_bytes=sram_kib * 1024)
    res = simulate(layers, spec)
    out = res.to_dict()
    if as_json:
        print(json.dumps(out, indent=2))
        return
    console.print(f"{len(layers)} layers on a {rows}x{cols} array ({df}): {out['compute_cycles']:,} compute cycles, "
                  f"utilization {out['utilization'] * 100:.1f}%, {out['macs']:,} MACs")


def _load_timeloop(files: list[Path], need_mapping: bool):  # type: ignore[no-untyped-def]
    from perfforge.accelerators import timeloop_io

    return timeloop_io.load(list(files), need_mapping=need_mapping)


@accel.command()
def evaluate(
    timeloop_spec: Path = typer.Option(..., "--timeloop-spec", help="Timeloop YAML; more files may follow it"),
    more_specs: Optional[list[Path]] = typer.Argument(None, help="further Timeloop YAML files (ERT, mapping...)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Evaluate one mapping: cycles, utilisation, energy and its per-component breakdown."""
    from perfforge.accelerators.nest import evaluate as run

    arch, prob, mapping, _ = _load_timeloop([timeloop_spec, *(more_specs or [])], True)
    ev = run(arch, mapping, prob, check=False)  # type: ignore[arg-type]
    out = {"engine": "perfforge loop-nest model (Timeloop-compatible inputs)", "architecture": arch.name,
           "problem": dict(prob.dims), **ev.to_dict()}
    if as_json:
        print(json.dumps(out, indent=2))
        return
    console.print(f"{ev.cycles:,.0f} cycles, utilization {ev.utilization * 100:.1f}%, energy {ev.energy_pj / 1e6:,.2f} uJ"
                  + ("" if ev.valid else f" (INVALID: {ev.reason})"))
    for k, v in ev.energy_breakdown_pj.items():
        console.print(f"  {k:24s} {v / 1e6:12.2f} uJ  {v / ev.macs * 1e3:10.2f} fJ/MAC")


@accel.command("map")
def map_cmd(
    timeloop_spec: Path = typer.Option(..., "--timeloop-spec", help="Timeloop YAML; more files may follow it"),
    more_specs: Optional[list[Path]] = typer.Argument(None, help="further Timeloop YAML files (ERT, mapping...)"),
    objective: str = typer.Option("edp", "--objective", help="edp | delay | energy"),
    victory: int = typer.Option(500, "--victory-condition", help="stop after this many valid non-improving mappings"),
    max_evals: int = typer.Option(100_000, "--max-evaluations"),
    timeout: float = typer.Option(60.0, "--timeout", help="seconds"),
    seed: int = typer.Option(0, "--seed"),
    out_map: Optional[Path] = typer.Option(None, "--out", help="write the best mapping as Timeloop mapping YAML"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Search mappings for the spec's architecture, problem and constraints."""
    import yaml

    from perfforge.accelerators import mapper
    from perfforge.core.files import write_atomic

    arch, prob, _, spec = _load_timeloop([timeloop_spec, *(more_specs or [])], False)
    cons = mapper.constraints_from_timeloop(spec, arch, prob)
    res = mapper.search(arch, prob, constraints=cons, objective=objective, victory_condition=victory,
                        max_evaluations=max_evals, timeout_s=timeout, seed=seed)
    tl_map = mapper.mapping_to_timeloop(arch, prob, res.best)
    if out_map:
        write_atomic(out_map, yaml.safe_dump({"mapping": tl_map}, sort_keys=False))
    out = {"engine": "perfforge random-pruned mapper", "objective": objective, "evaluated": res.evaluated,
           "valid": res.valid, "seconds": res.seconds, "mappings_per_s": res.mappings_per_s,
           **res.evaluation.to_dict(), "mapping": tl_map}
    if as_json:
        print(json.dumps(out, indent=2))
        return
    ev = res.evaluation
    console.print(f"best of {res.evaluated} mappings ({res.valid} valid, {res.mappings_per_s:,.0f}/s): "
                  f"{ev.cycles:,.0f} cycles, {ev.energy_pj / 1e6:,.2f} uJ, EDP {ev.edp:.4g} pJ*cycles")
