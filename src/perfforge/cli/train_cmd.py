"""``perfforge train``: a data-parallel training step on N GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from perfforge.cli.main import app, console
from perfforge.core.errors import ConfigError


@app.command()
def train(
    model: str = typer.Option(..., "--model", "-m", help="zoo id, HF config.json, or scenario YAML"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="catalog device id"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="data-parallel devices"),
    batch: Optional[int] = typer.Option(None, help="samples per GPU per step"),
    seq: Optional[int] = typer.Option(None, help="sequence length"),
    dtype: Optional[str] = typer.Option(None, help="fp32 | tf32 | fp16 | bf16"),
    optimizer: Optional[str] = typer.Option(None, help="sgd | sgd_momentum | adam | adamw | lion"),
    node: Optional[str] = typer.Option(None, help="node preset (default: the device's usual server)"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm", help="ring | direct | halving_doubling | double_binary_tree"),
    no_overlap: bool = typer.Option(False, "--no-overlap", help="all-reduce after backward instead of during it"),
    tp: int = typer.Option(1, "--tp", help="tensor parallel degree (not modelled yet: must be 1)"),
    pp: int = typer.Option(1, "--pp", help="pipeline parallel degree (not modelled yet: must be 1)"),
    zero: int = typer.Option(0, "--zero", help="ZeRO stage (not modelled yet: must be 0)"),
    recompute: Optional[bool] = typer.Option(None, "--recompute/--no-recompute"),
    calibration: Optional[str] = typer.Option(None, help="YAML overriding calibration constants"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help="write a Chrome trace (compute and comm streams)"),
) -> None:
    """Predict one data-parallel training step (compute overlapped with bucketed all-reduce)."""
    from perfforge.api import run_scenario
    from perfforge.cli.output import chrome_trace_json, print_result, write_atomic
    from perfforge.scenario import load_scenario, make_scenario

    for name, value, ok in (("--tp", tp, 1), ("--pp", pp, 1), ("--zero", zero, 0)):
        if value != ok:
            raise ConfigError(f"{name} {value}: tensor, pipeline and ZeRO parallelism are not modelled yet "
                              "(data parallelism only)")
    given = {"hardware": hardware, "gpus": gpus, "batch": batch, "seq": seq, "dtype": dtype, "optimizer": optimizer,
             "node": node, "collective_algorithm": algorithm, "recompute": recompute, "calibration": calibration}
    given = {k: v for k, v in given.items() if v is not None}
    if no_overlap:
        given["overlap"] = False
    if model.endswith((".yaml", ".yml")):
        base = load_scenario(model).model_dump()
        base.update(given)
    else:
        if "hardware" not in given:
            raise ConfigError("--hardware is required (see `perfforge hardware` for ids)")
        base = {"model": model, **given}
    base.update(mode="train", engine="distributed")
    result = run_scenario(make_scenario(**base))
    if trace_path:
        write_atomic(trace_path, chrome_trace_json(result))
    if as_json:
        print(result.to_json())
        return
    print_result(result, console)
    e = result.extra
    table = Table(show_header=False, title=f"Data parallel on {e['gpus']} GPUs ({e['node']})", title_justify="left")
    for label, value in (("compute per step", f"{e['compute_s'] * 1e3:.2f} ms"),
                         ("all-reduce time", f"{e['comm_s'] * 1e3:.2f} ms in {e['gradient_buckets']} buckets"),
                         ("exposed communication", f"{e['exposed_comm_s'] * 1e3:.3f} ms"),
                         ("memory per device", f"{e['memory_bytes_per_device'] / 1e9:.2f} GB")):
        table.add_row(label, value)
    console.print(table)
