"""``perfforge astra-sim simulate``: ASTRA-sim's inputs in, its analytical backend's numbers out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from perfforge.cli.main import app, console
from perfforge.core.errors import ConfigError
from perfforge.core.files import dumps_json

astra = typer.Typer(help="ASTRA-sim-compatible mode (reads ASTRA-sim's own input files).", no_args_is_help=True)
app.add_typer(astra, name="astra-sim")


@astra.command()
def simulate(
    workload: Optional[Path] = typer.Option(None, "--workload", help="ASTRA-sim 1.0 text workload (DATA)"),
    network: Path = typer.Option(..., "--network", help="analytical backend network YAML"),
    system: Path = typer.Option(..., "--system", help="system JSON"),
    compute_unit: str = typer.Option("us", "--compute-unit", help="us (Chakra converter) | ns (ASTRA-sim 1.0)"),
    collective_size: Optional[int] = typer.Option(None, "--all-reduce-bytes",
                                                  help="instead of a workload: one all-reduce of this many bytes"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Simulate like ASTRA-sim's congestion-unaware analytical backend; print finish and exposed communication."""
    from perfforge.distributed.astrasim.inputs import read_network, read_system, read_text_workload
    from perfforge.distributed.astrasim.simulate import all_reduce_ns
    from perfforge.distributed.astrasim.simulate import simulate as run

    dims, sys_cfg = read_network(network), read_system(system)
    if (workload is None) == (collective_size is None):
        raise ConfigError("give exactly one of --workload FILE or --all-reduce-bytes N")
    if collective_size is not None:
        if collective_size <= 0:
            raise ConfigError(f"--all-reduce-bytes must be > 0, got {collective_size}")
        t = all_reduce_ns(collective_size, dims, sys_cfg)
        out = {"finish_ns": t, "exposed_comm_ns": t, "compute_ns": 0.0, "comm_ns": t, "collectives": 1}
    else:
        res = run(read_text_workload(workload), dims, sys_cfg, compute_unit=compute_unit)  # type: ignore[arg-type]
        out = {"finish_ns": res.finish_ns, "exposed_comm_ns": res.exposed_comm_ns, "compute_ns": res.compute_ns,
               "comm_ns": res.comm_ns, "collectives": res.collectives}
    npus = 1
    for d in dims:
        npus *= d.npus
    out.update(npus=npus, compute_unit=compute_unit, engine="perfforge astra-sim compatible (analytical, congestion-unaware)")
    if as_json:
        print(dumps_json(out, indent=2))
        return
    console.print(f"finish {out['finish_ns']:,.0f} ns, exposed communication {out['exposed_comm_ns']:,.0f} ns "
                  f"on {npus} NPUs ({out['collectives']} collectives)")


@astra.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", help="folder for the ASTRA-sim inputs"),
    model: str = typer.Option(..., "--model", "-m", help="zoo id, HF config.json, or scenario YAML"),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="devices in all (default 8): tp x pp x data-parallel"),
    batch: Optional[int] = typer.Option(None, "--batch", help="per GPU"),
    seq: Optional[int] = typer.Option(None, "--seq"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 | tf32 | fp16 | bf16 | fp64"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer"),
    node: Optional[str] = typer.Option(None, "--node"),
    zero: Optional[int] = typer.Option(None, "--zero", help="ZeRO stage 0-3 (3 = FSDP)"),
    tp: Optional[int] = typer.Option(None, "--tp", help="tensor-parallel size (decoders: zoo or HF config)"),
    pp: Optional[int] = typer.Option(None, "--pp", help="pipeline stages (decoders: zoo or HF config)"),
    microbatches: Optional[int] = typer.Option(None, "--microbatches", help="microbatches per step"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="1f1b | gpipe | interleaved"),
    virtual_stages: Optional[int] = typer.Option(None, "--virtual-stages", help="model chunks per stage (interleaved)"),
    sequence_parallel: Optional[bool] = typer.Option(None, "--sequence-parallel/--no-sequence-parallel"),
    recompute: Optional[bool] = typer.Option(None, "--recompute/--no-recompute", help="activation recomputation"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm", help="ring | direct | halving_doubling | double_binary_tree "
                                            "(written as ASTRA-sim's ring, direct, halvingDoubling, doubleBinaryTree)"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="mixed precision as torch.autocast runs it"),
    fuse_bn_act: Optional[bool] = typer.Option(None, "--fuse-bn-act/--no-fuse-bn-act",
                                               help="CNNs: batch norm fused with its ReLU (and residual add)"),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="training dropout probability"),
    calibration: Optional[str] = typer.Option(None, help="YAML overriding calibration constants"),
    backend: Optional[str] = typer.Option(None, "--backend", help="analytical | learned: what times each op"),
) -> None:
    """Write a training scenario as ASTRA-sim inputs (Chakra traces, network, system, memory; communicator groups
    with tp/pp): the same workload, fabric and per-op times perfforge's own distributed engine uses. Data
    parallelism (DDP, ZeRO 1-3) for any model; tensor x pipeline x data parallelism (ZeRO 0-3, GPipe, 1F1B,
    interleaved 1F1B, sequence parallelism, recomputation) for decoder transformers (zoo ids or HF config.json)."""
    from perfforge.adapters.astrasim import export
    from perfforge.cli.scenario_options import scenario_from_options

    given = {"hardware": hardware, "gpus": gpus, "batch": batch, "seq": seq, "dtype": dtype, "optimizer": optimizer,
             "node": node, "zero": zero, "collective_algorithm": algorithm, "amp": amp, "fuse_bn_act": fuse_bn_act,
             "dropout": dropout, "calibration": calibration, "tp": tp, "pp": pp, "microbatches": microbatches,
             "schedule": schedule, "virtual_stages": virtual_stages, "sequence_parallel": sequence_parallel,
             "recompute": recompute, "backend": backend}
    scenario = scenario_from_options(model, given, defaults={"gpus": 8}, mode="train", engine="distributed")
    manifest = export(scenario, out)
    console.print(f"wrote {manifest['npus']} Chakra traces of up to {manifest['nodes_per_trace']} nodes "
                  f"({manifest['collectives']} collectives) and configs to {out}"
                  + (f" (communicator groups: {manifest['comm_groups']})" if manifest.get("comm_groups") else ""))


@astra.command("replay")
def replay_cmd(
    folder: Path = typer.Argument(..., help="a folder written by `perfforge astra-sim export`"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replay exported traces with perfforge's own collective and link costs (an event-driven check of the export,
    no ASTRA-sim needed) and compare with perfforge's step time."""
    from perfforge.adapters.chakra_replay import replay_export

    res = replay_export(folder)
    if as_json:
        print(dumps_json(res, indent=2))
    else:
        console.print(f"replayed {res['ranks_replayed']} traces ({res['nodes']:,} nodes): {res['replay_s'] * 1e3:,.2f} ms, "
                      f"perfforge's step {res['perfforge_step_s'] * 1e3:,.2f} ms ({res['ratio']:.3f}x)")


@astra.command("run")
def run_cmd(
    folder: Path = typer.Argument(..., help="a folder written by `perfforge astra-sim export`"),
    binary: Optional[str] = typer.Option(None, "--binary", help="ASTRA-sim analytical binary (or ASTRA_SIM_BIN)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run a user-provided ASTRA-sim binary on exported inputs and report its step time."""
    from perfforge.adapters.astrasim import run

    res = run(folder, binary)
    if as_json:
        print(dumps_json(res, indent=2))
    else:
        console.print(f"ASTRA-sim: finish {res['finish_ns']:,} ns, exposed communication {res['exposed_comm_ns']:,} ns")
