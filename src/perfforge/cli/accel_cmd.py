"""``perfforge accel``: systolic arrays (SCALE-Sim-compatible) and loop-nest mappings (Timeloop-compatible)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from perfforge.cli.main import app, console
from perfforge.core.errors import ConfigError
from perfforge.core.files import dumps_json

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
        print(dumps_json(out, indent=2))
        return
    console.print(f"{len(layers)} layers on a {rows}x{cols} array ({df}): {out['compute_cycles']:,} compute cycles, "
                  f"utilization {out['utilization'] * 100:.1f}%, {out['macs']:,} MACs")


def _load_timeloop(files: list[Path], need_mapping: bool):  # type: ignore[no-untyped-def]
    from perfforge.accelerators import timeloop_io

    return timeloop_io.load(list(files), need_mapping=need_mapping)


def _target(timeloop_spec: Optional[Path], more: Optional[list[Path]], arch: Optional[str], layer: Optional[str],
            array: Optional[str], tech: Optional[str], need_mapping: bool):  # type: ignore[no-untyped-def]
    """(architecture, problem, mapping or None, constraints, notes) from Timeloop specs or a preset + layer."""
    from perfforge.accelerators import mapper, presets

    if (timeloop_spec is None) == (arch is None):
        raise ConfigError("give exactly one of --timeloop-spec FILE.yaml or --arch PRESET "
                          f"(presets: {', '.join(presets.list_presets())})")
    if timeloop_spec is not None:
        if layer or array or tech:
            raise ConfigError("--layer, --array and --technology apply to --arch presets, not to --timeloop-spec")
        a, prob, m, spec = _load_timeloop([timeloop_spec, *(more or [])], need_mapping)
        return a, prob, m, mapper.constraints_from_timeloop(spec, a, prob), []
    if layer is None:
        raise ConfigError("--arch needs --layer MODEL:LAYER, e.g. resnet50:layer1.0.1.conv")
    pr = presets.build(arch, array=array, technology=tech)
    prob = presets.layer_problem(layer)
    m = None
    if more:
        from perfforge.accelerators import timeloop_io

        m = timeloop_io.parse_mapping(timeloop_io.load_specs(list(more)), pr.arch, prob)
    return pr.arch, prob, m, pr.constraints(prob), list(pr.energy_notes)


_SPEC = typer.Option(None, "--timeloop-spec", help="Timeloop YAML; more files may follow it")
_MORE = typer.Argument(None, help="further Timeloop YAML files (ERT, mapping...); with --arch: a mapping file")
_ARCH = typer.Option(None, "--arch", help="preset: eyeriss_like | simba_like | nvdla_like | tpu_like")
_LAYER = typer.Option(None, "--layer", help="MODEL:LAYER, e.g. resnet50:layer1.0.1.conv")
_ARRAY = typer.Option(None, "--array", help="NxN for tpu_like (32..256)")
_TECH = typer.Option(None, "--technology", help="energy table: 45nm_horowitz | 32nm_accelergy")


def _search(a, prob, cons, objective, victory, max_evals, timeout, seed, workers):  # type: ignore[no-untyped-def]
    from perfforge.accelerators import mapper

    return mapper.search(a, prob, constraints=cons, objective=objective, victory_condition=victory,
                         max_evaluations=max_evals, timeout_s=timeout, seed=seed, workers=workers)


@accel.command()
def evaluate(
    timeloop_spec: Optional[Path] = _SPEC,
    more_specs: Optional[list[Path]] = _MORE,
    arch: Optional[str] = _ARCH,
    layer: Optional[str] = _LAYER,
    array: Optional[str] = _ARRAY,
    technology: Optional[str] = _TECH,
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Evaluate one mapping: cycles, utilisation, energy and its per-component breakdown.

    With --arch and no mapping file, the mapping is first searched (EDP, seed 0) and reported as such."""
    from perfforge.accelerators.nest import evaluate as run

    a, prob, mapping, cons, notes = _target(timeloop_spec, more_specs, arch, layer, array, technology,
                                            timeloop_spec is not None)
    how = "given"
    if mapping is None:
        res = _search(a, prob, cons, "edp", 500, 200_000, 60.0, 0, 1)
        mapping, how = res.best, f"searched by the mapper ({res.method}, {res.evaluated} mappings, EDP, seed 0)"
    ev = run(a, mapping, prob, check=False)
    out = {"engine": "perfforge loop-nest model (Timeloop-compatible)", "architecture": a.name,
           "technology": a.technology, "problem": dict(prob.dims), "mapping_source": how, **ev.to_dict(),
           "energy_sources": notes}
    if as_json:
        print(dumps_json(out, indent=2))
        return
    console.print(f"{a.name}: {ev.cycles:,.0f} cycles, utilization {ev.utilization * 100:.1f}%, "
                  f"energy {ev.energy_pj / 1e6:,.2f} uJ (mapping {how})" + ("" if ev.valid else f" (INVALID: {ev.reason})"))
    for k, v in ev.energy_breakdown_pj.items():
        console.print(f"  {k:24s} {v / 1e6:12.2f} uJ  {v / ev.macs * 1e3:10.2f} fJ/MAC")


@accel.command("map")
def map_cmd(
    timeloop_spec: Optional[Path] = _SPEC,
    more_specs: Optional[list[Path]] = _MORE,
    arch: Optional[str] = _ARCH,
    layer: Optional[str] = _LAYER,
    array: Optional[str] = _ARRAY,
    technology: Optional[str] = _TECH,
    objective: str = typer.Option("edp", "--objective", help="edp | delay | energy"),
    victory: int = typer.Option(500, "--victory-condition", help="stop after this many valid non-improving mappings"),
    max_evals: int = typer.Option(200_000, "--max-evaluations"),
    timeout: float = typer.Option(60.0, "--timeout", help="seconds"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(1, "--workers", help="independent searches in parallel processes"),
    out_map: Optional[Path] = typer.Option(None, "--out", help="write the best mapping as Timeloop mapping YAML"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Search mappings (exhaustive for small spaces, else random-pruned + hill-climbing) for the spec or preset."""
    import yaml

    from perfforge.accelerators import mapper
    from perfforge.core.files import write_atomic

    a, prob, _, cons, notes = _target(timeloop_spec, more_specs, arch, layer, array, technology, False)
    res = _search(a, prob, cons, objective, victory, max_evals, timeout, seed, workers)
    tl_map = mapper.mapping_to_timeloop(a, prob, res.best)
    if out_map:
        write_atomic(out_map, yaml.safe_dump({"mapping": tl_map}, sort_keys=False))
    out = {"engine": f"perfforge mapper ({res.method})", "architecture": a.name, "objective": objective,
           "evaluated": res.evaluated, "valid": res.valid, "seconds": res.seconds,
           "mappings_per_s": res.mappings_per_s, "workers": res.workers, "space_size": res.space_size,
           "refinement_gain": res.refined_gain, **res.evaluation.to_dict(), "mapping": tl_map, "energy_sources": notes}
    if as_json:
        print(dumps_json(out, indent=2))
        return
    ev = res.evaluation
    console.print(f"{res.method}: best of {res.evaluated:,} mappings ({res.valid:,} valid, "
                  f"{res.mappings_per_s:,.0f}/s): {ev.cycles:,.0f} cycles, {ev.energy_pj / 1e6:,.2f} uJ, "
                  f"EDP {ev.edp:.4g} pJ*cycles")


@accel.command("timeloop-export")
def timeloop_export(
    arch: str = typer.Option(..., "--arch", help="preset: eyeriss_like | simba_like | nvdla_like | tpu_like"),
    layer: str = typer.Option(..., "--layer", help="MODEL:LAYER, e.g. resnet50:layer1.0.1.conv"),
    out_dir: Path = typer.Option(..., "--out", help="folder for arch.yaml, problem.yaml, ERT.yaml, map.yaml"),
    array: Optional[str] = _ARRAY,
    technology: Optional[str] = _TECH,
    run_tool: Optional[str] = typer.Option(None, "--run", help="timeloop-model | timeloop-mapper (must be on PATH)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Write Timeloop v0.4 inputs (with the mapping perfforge's mapper finds); optionally run Timeloop on them."""
    from perfforge.accelerators import timeloop_adapter

    a, prob, _, cons, _ = _target(None, None, arch, layer, array, technology, False)
    res = _search(a, prob, cons, "edp", 500, 200_000, 60.0, 0, 1)
    paths = timeloop_adapter.export(a, prob, res.best, out_dir)
    out: dict = {"files": {k: str(p) for k, p in paths.items()},
                 "perfforge": {"cycles": res.evaluation.cycles, "energy_uj": res.evaluation.energy_pj * 1e-6}}
    if run_tool:
        out["timeloop"] = timeloop_adapter.run(paths, run_tool)
    if as_json:
        print(dumps_json(out, indent=2))
        return
    console.print(f"wrote {', '.join(out['files'].values())}")
    console.print(f"perfforge: {out['perfforge']['cycles']:,.0f} cycles, {out['perfforge']['energy_uj']:,.2f} uJ")
    if "timeloop" in out:
        console.print(f"{run_tool}: {out['timeloop']}")
