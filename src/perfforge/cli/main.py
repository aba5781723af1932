"""``perfforge`` CLI. Every user error becomes one line on stderr and exit status 2; never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from perfforge.core.errors import PerfforgeError
from perfforge.workload.optimizer import OPTIMIZERS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Predict how fast ML models train and serve on given hardware.")
console = Console()
EXIT_USER_ERROR = 2


@app.command()
def predict(
    model: str = typer.Option(..., "--model", "-m", help="zoo id, HF config.json path, or scenario YAML"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="catalog id or device YAML path"),
    mode: Optional[str] = typer.Option(None, help="train | inference | decode"),
    batch: Optional[int] = typer.Option(None, help="samples per step (per device)"),
    seq: Optional[int] = typer.Option(None, help="sequence length (context length for decode)"),
    dtype: Optional[str] = typer.Option(None, help="fp32 | tf32 | fp16 | bf16 | fp8 | int8 (inference) | fp64"),
    optimizer: Optional[str] = typer.Option(None, help=" | ".join(OPTIMIZERS)),
    recompute: Optional[bool] = typer.Option(None, "--recompute/--no-recompute", help="full activation recomputation"),
    attention: Optional[str] = typer.Option(None, "--attention", help="fused | unfused (HF eager) | sdpa (HF default)"),
    memory_format: Optional[str] = typer.Option(None, "--memory-format",
                                                help="nhwc (channels_last) | nchw: convolution activation layout"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="training dropout probability (adds its kernels)"),
    head: Optional[str] = typer.Option(None, "--head", help="HF head of a zoo transformer: BERT none | mlm | pretraining"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp",
                                       help="mixed precision as torch.autocast runs it (fp32 weights; --dtype fp16|bf16)"),
    fuse_bn_act: Optional[bool] = typer.Option(None, "--fuse-bn-act/--no-fuse-bn-act",
                                               help="CNNs: batch norm fused with its ReLU (and residual add), as "
                                                    "NVIDIA's MXNet recipe runs fp16"),
    calibration: Optional[str] = typer.Option(None, help="YAML overriding calibration constants"),
    execution: Optional[str] = typer.Option(None, help="eager (host issues each op) | graph (CUDA graphs)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="analytical | learned (per-op timer)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="write the per-op breakdown as CSV"),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help="write a Chrome trace (Perfetto) JSON"),
    all_layers: bool = typer.Option(False, "--all-layers", help="show every layer in the table"),
) -> None:
    """Predict one training step or inference pass on one device."""
    from perfforge.api import run_scenario
    from perfforge.cli.output import (
        breakdown_csv,
        chrome_trace_json,
        print_result,
        write_atomic,
    )
    from perfforge.cli.scenario_options import scenario_from_options

    given = {"hardware": hardware, "mode": mode, "batch": batch, "seq": seq, "dtype": dtype, "optimizer": optimizer,
             "recompute": recompute, "attention_impl": attention, "calibration": calibration,
             "execution": execution, "backend": backend, "memory_format": memory_format, "dropout": dropout,
             "amp": amp, "head": head, "fuse_bn_act": fuse_bn_act}
    result = run_scenario(scenario_from_options(model, given))
    if csv_path:
        write_atomic(csv_path, breakdown_csv(result))
    if trace_path:
        write_atomic(trace_path, chrome_trace_json(result))
    if as_json:
        print(result.to_json())
    else:
        print_result(result, console, layer_limit=None if all_layers else 20)


@app.command("run")
def run_cmd(
    scenario_file: Path = typer.Argument(..., help="scenario YAML"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Run a validated scenario file."""
    from perfforge.api import run_scenario
    from perfforge.cli.output import print_result
    from perfforge.scenario import load_scenario

    result = run_scenario(load_scenario(scenario_file))
    if as_json:
        print(result.to_json())
    else:
        print_result(result, console)


@app.command()
def models(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the model zoo."""
    from perfforge.workload.zoo import MODELS, get_model

    rows = []
    for name in MODELS.names():
        entry = MODELS.get(name)
        w = get_model(name, batch=1)
        rows.append({"id": name, "kind": entry.kind, "params": w.params, "default_seq": entry.default_seq,
                     "description": entry.description})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "kind", "parameters", "default seq", "description")
    for r in rows:
        table.add_row(r["id"], r["kind"], f"{r['params']:,}", str(r["default_seq"]), escape(r["description"]))
    console.print(table)


@app.command()
def hardware(
    device_id: Optional[str] = typer.Argument(None, help="show one device, node or network with its sources"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the hardware catalog (devices, node presets, networks), or show one entry's figures and sources."""
    from perfforge.system.catalog import get_device, get_network, get_node, list_devices, list_networks, list_nodes

    if device_id is None:
        devices = [get_device(d) for d in list_devices()]
        nodes = [get_node(n) for n in list_nodes()]
        networks = [get_network(n) for n in list_networks()]
        if as_json:   # the devices (nodes and networks: `perfforge hardware ID --json`)
            print(json.dumps([d.model_dump(mode="json") for d in devices], indent=2))
            return
        # ids are what --hardware/--node take: never truncated or wrapped (the name column wraps instead)
        table = Table(Column("id", no_wrap=True), "name", "bf16/fp16 TFLOP/s", "fp32 TFLOP/s", "memory", "bandwidth")
        for d in devices:
            half = d.peak_flops.get("bf16") or d.peak_flops.get("fp16")  # type: ignore[call-overload]
            fp32 = d.peak_flops.get("fp32")  # type: ignore[call-overload]
            table.add_row(d.id, d.name, f"{half.value / 1e12:.1f}" if half else "-",
                          f"{fp32.value / 1e12:.1f}" if fp32 else "-", f"{d.memory_bytes / 1e9:.0f} GB",
                          f"{d.memory_bytes_per_s / 1e9:,.0f} GB/s")
        console.print(table)
        nt = Table(Column("node (--node)", no_wrap=True), Column("devices", no_wrap=True),
                   Column("fabric", overflow="fold"), "GB/s per GPU", "NICs", Column("network", no_wrap=True))
        for n in nodes:
            nt.add_row(n.id, f"{n.devices_per_node} x {n.device}", n.fabric_kind,
                       f"{n.fabric_bandwidth.value / 1e9:g}", str(n.nics_per_node), n.network or "-")
        console.print(nt)
        wt = Table(Column("network", no_wrap=True), "name", "kind", "GB/s per port", "latency")
        for w in networks:
            wt.add_row(w.id, w.name, w.kind, f"{w.link_bytes_per_s / 1e9:g}", f"{w.latency_s * 1e6:g} us")
        console.print(wt)
        return
    if device_id in list_nodes() or device_id in list_networks():
        entry = get_node(device_id) if device_id in list_nodes() else get_network(device_id)
        if as_json:
            print(json.dumps(entry.model_dump(mode="json"), indent=2))
            return
        table = Table("field", "value", title=f"{entry.name} ({entry.id})", title_justify="left")
        for key, value in entry.model_dump(mode="json").items():
            if key != "sources":
                table.add_row(key, escape(str(value)))
        console.print(table)
        for key, text in entry.sources.items():
            console.print(escape(f"  [{key}] {text}"))
        return
    d = get_device(device_id)
    if as_json:
        print(json.dumps(d.model_dump(mode="json"), indent=2))
        return
    table = Table("figure", "value", "source", "note", title=f"{d.name} ({d.id})", title_justify="left")
    for dtype, fig in d.peak_flops.items():
        table.add_row(f"peak {dtype.value} (dense)", f"{fig.value / 1e12:g} TFLOP/s", escape(fig.source),
                      escape(fig.note or ""))
    for dtype, fig in d.sparse_flops.items():
        table.add_row(f"sparse {dtype.value} (never a peak)", f"{fig.value / 1e12:g} TFLOP/s", escape(fig.source),
                      escape(fig.note or ""))
    for name in ("memory_capacity", "memory_bandwidth", "sm_count", "l2_cache", "boost_clock", "tdp",
                 "scale_up_bandwidth", "pcie_bandwidth"):
        fig = getattr(d, name)
        if fig is not None:
            table.add_row(name, f"{fig.value:g}", escape(fig.source), escape(fig.note or ""))
    console.print(table)
    for key, text in d.sources.items():
        console.print(escape(f"  [{key}] {text}"))


def _register_optional_commands() -> None:
    """Commands that live in their own modules (profiling, and later engines) attach themselves here."""
    from perfforge.cli import (  # noqa: F401
        accel_cmd,
        astrasim_cmd,
        calibrate_cmd,
        evaluate_cmd,
        learn_cmd,
        profile_cmd,
        serve_cmd,
        sweep_cmd,
        train_cmd,
    )


def _click_modules() -> list[object]:
    """Typer >= 0.26 vendors click as ``typer._click``; older releases use click itself. Handle both."""
    mods: list[object] = []
    try:
        from typer._click import exceptions as vendored  # type: ignore[import-not-found]

        mods.append(vendored)
    except ImportError:
        pass
    try:
        import click.exceptions

        mods.append(click.exceptions)
    except ImportError:
        pass
    return mods


def _types(name: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(m, name) for m in _click_modules() if hasattr(m, name))


def main(argv: list[str] | None = None) -> int:
    _register_optional_commands()
    try:
        app(args=argv, standalone_mode=False, prog_name="perfforge")
    except PerfforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except _types("Exit") as exc:
        return int(getattr(exc, "exit_code", 0))
    except _types("Abort"):
        print("error: aborted", file=sys.stderr)
        return 130
    except _types("NoArgsIsHelpError") as exc:
        ctx = getattr(exc, "ctx", None)
        print(ctx.get_help() if ctx else str(exc))
        return 0
    except _types("ClickException") as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_USER_ERROR
    except (FileNotFoundError, IsADirectoryError, FileExistsError, PermissionError, UnicodeDecodeError) as exc:
        print(f"error: {_file_problem(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _file_problem(exc: Exception) -> str:
    """One line for a file the user named that cannot be read or written."""
    if isinstance(exc, UnicodeDecodeError):
        return f"an input file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    name = getattr(exc, "filename", None)
    for kind, text in ((FileNotFoundError, f"file not found: {name}"),
                       (IsADirectoryError, f"{name} is a folder; give a file name"),
                       (FileExistsError, f"{name} already exists and is not a folder")):
        if isinstance(exc, kind):
            return text
    return f"permission denied: {name}"


if __name__ == "__main__":
    # Run as `python -m perfforge.cli.main`: dispatch through the importable module so that commands defined
    # in other modules register on the same app object.
    from perfforge.cli.main import main as _main

    sys.exit(_main())
