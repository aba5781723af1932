"""``perfforge train``: a data-parallel training step on N GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from perfforge.cli.main import app, console
from perfforge.workload.optimizer import OPTIMIZERS


@app.command()
def train(
    model: str = typer.Option(..., "--model", "-m", help="zoo id, HF config.json, or scenario YAML"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help="catalog device id"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="data-parallel devices"),
    batch: Optional[int] = typer.Option(None, help="samples per GPU per step (per data-parallel replica with --tp/--pp)"),
    seq: Optional[int] = typer.Option(None, help="sequence length"),
    dtype: Optional[str] = typer.Option(None, help="fp32 | tf32 | fp16 | bf16 | fp8 | fp64"),
    optimizer: Optional[str] = typer.Option(None, help=" | ".join(OPTIMIZERS)),
    node: Optional[str] = typer.Option(None, help="node preset (default: the device's usual server)"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm", help="ring | direct | halving_doubling | double_binary_tree"),
    no_overlap: bool = typer.Option(False, "--no-overlap", help="all-reduce after backward instead of during it"),
    tp: Optional[int] = typer.Option(None, "--tp", help="tensor-parallel degree (transformers)"),
    pp: Optional[int] = typer.Option(None, "--pp", help="pipeline-parallel stages (transformers)"),
    zero: Optional[int] = typer.Option(None, "--zero", help="ZeRO stage 0-3 (3 = FSDP)"),
    microbatches: Optional[int] = typer.Option(None, "--microbatches", help="microbatches per step"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="1f1b | gpipe | interleaved"),
    virtual_stages: Optional[int] = typer.Option(None, "--virtual-stages", help="chunks per stage (interleaved)"),
    sequence_parallel: bool = typer.Option(False, "--sequence-parallel", help="Megatron sequence parallelism"),
    comm_streams: Optional[int] = typer.Option(None, "--comm-streams", help="collectives allowed to run at once"),
    independent_links: bool = typer.Option(False, "--independent-links",
                                           help="concurrent collectives do not share bandwidth (congestion-unaware)"),
    recompute: Optional[bool] = typer.Option(None, "--recompute/--no-recompute"),
    calibration: Optional[str] = typer.Option(None, help="YAML overriding calibration constants"),
    backend: Optional[str] = typer.Option(None, "--backend", help="analytical | learned (per-op timer)"),
    memory_format: Optional[str] = typer.Option(None, "--memory-format",
                                                help="nhwc (channels_last) | nchw: convolution activation layout"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="training dropout probability (adds its kernels)"),
    attention: Optional[str] = typer.Option(None, "--attention", help="fused | unfused (HF eager) | sdpa (HF default)"),
    head: Optional[str] = typer.Option(None, "--head", help="HF head of a zoo transformer: BERT none | mlm | pretraining"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp",
                                       help="mixed precision as torch.autocast runs it (fp32 weights; --dtype fp16|bf16)"),
    fuse_bn_act: Optional[bool] = typer.Option(None, "--fuse-bn-act/--no-fuse-bn-act",
                                               help="CNNs: batch norm fused with its ReLU (and residual add), as "
                                                    "NVIDIA's MXNet recipe runs fp16"),
    loader_workers: Optional[int] = typer.Option(
        None, "--loader-workers", help="data-loader workers per GPU: the step waits for the host's input pipeline"),
    loader_rate: Optional[float] = typer.Option(
        None, "--loader-rate", help="samples/s per loader worker (default: measured CPU JPEG rate, preset jpeg-cpu-xeon-emr)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help="write a Chrome trace (compute and comm streams)"),
) -> None:
    """Predict one data-parallel training step (compute overlapped with bucketed all-reduce)."""
    from perfforge.api import run_scenario
    from perfforge.cli.output import chrome_trace_json, print_result, write_atomic
    from perfforge.cli.scenario_options import scenario_from_options

    given = {"hardware": hardware, "gpus": gpus, "batch": batch, "seq": seq, "dtype": dtype, "optimizer": optimizer,
             "node": node, "collective_algorithm": algorithm, "recompute": recompute, "calibration": calibration,
             "tp": tp, "pp": pp, "zero": zero, "microbatches": microbatches, "schedule": schedule,
             "virtual_stages": virtual_stages, "backend": backend, "loader_workers": loader_workers,
             "loader_rate": loader_rate, "memory_format": memory_format, "dropout": dropout,
             "attention_impl": attention, "amp": amp, "head": head, "fuse_bn_act": fuse_bn_act}
    if sequence_parallel:
        given["sequence_parallel"] = True
    if comm_streams is not None:
        given["comm_streams"] = comm_streams
    if independent_links:
        given["shared_links"] = False
    if no_overlap:
        given["overlap"] = False
    result = run_scenario(scenario_from_options(model, given, mode="train", engine="distributed"))
    if trace_path:
        write_atomic(trace_path, chrome_trace_json(result))
    if as_json:
        print(result.to_json())
        return
    e = result.extra
    if result.breakdown:
        print_result(result, console)
    title = (f"{e['gpus']} GPU{'s' if e['gpus'] > 1 else ''} ({e['node'] or 'no node: one device'}): tp {e.get('tp', 1)} x pp {e.get('pp', 1)} x dp "
             f"{e.get('dp', e['gpus'])}, ZeRO {e.get('zero', 0)}")
    table = Table(show_header=False, title=title, title_justify="left")
    rows = [("step time", f"{result.step_time_s * 1e3:.2f} ms"),
            ("throughput", f"{result.throughput_samples_per_s:,.1f} samples/s"),
            ("MFU", f"{100 * result.mfu:.1f}%"),
            ("compute per step", f"{e['compute_s'] * 1e3:.2f} ms"),
            ("communication", f"{e['comm_s'] * 1e3:.2f} ms, exposed {e['exposed_comm_s'] * 1e3:.3f} ms")]
    if "pipeline_bubble_s" in e:
        rows.append(("pipeline bubble", f"{e['pipeline_bubble_s'] * 1e3:.2f} ms"))
    if "input_s" in e:
        rows.append(("input pipeline", f"{e['input_s'] * 1e3:.2f} ms per step from {e['loader_workers']} workers"
                     + (f", GPU waits {e['input_wait_s'] * 1e3:.2f} ms" if e["input_bound"] else "")))
    elif "tp" not in e:
        rows.append(("input pipeline", "not modelled (--loader-workers N bounds the step by the host's data loader)"))
    rows.append(("memory per device", f"{e['memory_bytes_per_device'] / 1e9:.2f} GB"
                 + ("" if result.fits else "  (DOES NOT FIT)")))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
