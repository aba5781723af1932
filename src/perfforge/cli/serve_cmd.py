"""``perfforge serve``: LLM-serving simulation; ``serve capacity`` and ``serve search`` on top of it.

The spec options are declared once (``SPEC_OPTIONS``) and added to each command's signature, so the three
commands accept the same flags. This module avoids ``from __future__ import annotations``: typer reads the
annotations of the generated signature.
"""

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape

from perfforge.cli.main import app, console
from perfforge.core.errors import ConfigError
from perfforge.core.files import dumps_json

serve_app = typer.Typer(help="Simulate LLM serving (vLLM, Orca, Sarathi-Serve, static batching).",
                        invoke_without_command=True, no_args_is_help=False)
app.add_typer(serve_app, name="serve")

# name -> (type, flag, help); every default comes from ServeSpec (Vidur 0.0.26's defaults)
SPEC_OPTIONS: dict[str, tuple[Any, str, str]] = {
    "model": (Optional[str], "--model", "decoder LLM: zoo id (e.g. llama-2-7b) or HF config.json path"),
    "hardware": (Optional[str], "--hardware", "device catalog id"),
    "node": (Optional[str], "--node", "node preset for TP/PP links (default: the device's usual node)"),
    "dtype": (Optional[str], "--dtype", "fp16 | bf16"),
    "backend": (Optional[str], "--backend", "analytical | learned (operator times when no --profile-dir)"),
    "profile_dir": (Optional[str], "--profile-dir", "Vidur-format mlp/attention/all_reduce/send_recv CSVs"),
    "tp": (Optional[int], "--tp", "tensor-parallel degree per replica"),
    "pp": (Optional[int], "--pp", "pipeline stages per replica"),
    "replicas": (Optional[int], "--replicas", "number of replicas"),
    "routing": (Optional[str], "--routing", "round_robin | least_outstanding | random"),
    "scheduler": (Optional[str], "--scheduler", "vllm | orca | sarathi | static"),
    "block_size": (Optional[int], "--block-size", "KV block size in tokens (16)"),
    "max_batch_size": (Optional[int], "--max-batch-size", "batch size cap (128)"),
    "max_tokens_per_batch": (Optional[int], "--max-tokens-per-batch", "vLLM token budget per batch (4096)"),
    "chunk_size": (Optional[int], "--chunk-size", "Sarathi chunk size (512)"),
    "memory_fraction": (Optional[float], "--memory-fraction", "usable device memory fraction (0.9)"),
    "max_tokens": (Optional[int], "--max-tokens", "longest request in tokens (4096)"),
    "requests": (Optional[int], "--requests", "number of requests (1000)"),
    "arrival": (Optional[str], "--arrival", "poisson | gamma | static | trace"),
    "qps": (Optional[float], "--qps", "arrival rate, requests/s (2)"),
    "cv": (Optional[float], "--cv", "gamma arrivals' coefficient of variation"),
    "length": (Optional[str], "--length", "fixed | uniform | zipf | trace"),
    "prefill": (Optional[int], "--prefill", "prompt tokens (fixed lengths; 512)"),
    "decode": (Optional[int], "--decode", "output tokens (fixed lengths; 128)"),
    "min_tokens": (Optional[int], "--min-tokens", "shortest total length (uniform/zipf)"),
    "prefill_to_decode_ratio": (Optional[float], "--pd-ratio", "prefill:decode split (uniform/zipf)"),
    "trace": (Optional[str], "--trace", "trace CSV (arrived_at?, num_prefill_tokens, num_decode_tokens)"),
    "seed": (Optional[int], "--seed", "random seed (42)"),
    "replica_jobs": (Optional[int], "--replica-jobs",
                     "processes that simulate replicas in parallel (round_robin/random routing; same results; 1)"),
    "core": (Optional[str], "--core", "auto | compiled | python: the simulation core (same results; auto)"),
    "ttft_slo_s": (Optional[float], "--ttft-slo", "TTFT SLO in s, for goodput"),
    "tbt_slo_s": (Optional[float], "--tbt-slo", "TPOT SLO in s, for goodput"),
}


def with_spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Append SPEC_OPTIONS to ``fn``'s parameters; ``fn`` receives them as one ``spec_kwargs`` dict."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name != "spec_kwargs"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typ,
                               default=typer.Option(None, flag, help=help_))
             for name, (typ, flag, help_) in SPEC_OPTIONS.items()]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        spec_kwargs = {name: kwargs.pop(name) for name in SPEC_OPTIONS}
        return fn(*args, spec_kwargs=spec_kwargs, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return wrapper


def _say_if_compiling(spec: Any) -> None:
    """The compiled core's first run on a machine compiles it (tens of seconds): say so on stderr."""
    from perfforge.serving import compiled
    from perfforge.serving.run import simulation_core

    if simulation_core(spec) == "compiled" and compiled.needs_compiling():
        typer.echo("compiling perfforge's serving core with numba (once per machine, 20-40 s; "
                   "--core python skips it)", err=True)


def _spec(scenario: Optional[Path], spec_kwargs: dict[str, Any]):  # noqa: ANN202
    from perfforge.serving.spec import load_spec, make_spec

    if scenario is not None:
        return load_spec(scenario, **spec_kwargs)
    return make_spec(**spec_kwargs)


@serve_app.callback()
@with_spec_options
def serve(
    ctx: typer.Context,
    scenario: Optional[Path] = typer.Option(None, "--scenario", help="serving scenario YAML (ServeSpec fields)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="write per-request metrics as CSV"),
    chrome_trace: Optional[Path] = typer.Option(None, "--chrome-trace", help="write batches as a Chrome trace"),
    timeline: Optional[Path] = typer.Option(None, "--timeline-csv", help="write batch size and KV use over time"),
    export_profiles: Optional[Path] = typer.Option(None, "--export-profiles",
                                                   help="write the operator table as Vidur-format CSVs here"),
    spec_kwargs: dict = None,  # type: ignore[assignment]
) -> None:
    """Simulate serving a model on replicas and print TTFT, TPOT, E2E percentiles and throughput."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"spec_kwargs": spec_kwargs, "scenario": scenario}
        return
    from perfforge.core.files import write_atomic
    from perfforge.serving.run import operator_table, simulate

    spec = _spec(scenario, spec_kwargs)
    if export_profiles is not None:
        from perfforge.serving.vidur_profiles import write_profile_dir

        write_profile_dir(operator_table(spec), export_profiles, model=spec.model, tp=spec.tp,
                          block_size=spec.block_size, max_tokens=spec.max_tokens)
    _say_if_compiling(spec)
    report = simulate(spec)
    if csv_path:
        write_atomic(csv_path, report.requests_csv())
    if chrome_trace:
        write_atomic(chrome_trace, report.chrome_trace())
    if timeline:
        write_atomic(timeline, report.timeline_csv())
    if as_json:
        print(report.to_json())
        return
    _print_summary(report)


def _print_summary(report) -> None:  # noqa: ANN001
    from rich.table import Table

    s = report.summary
    spec = report.spec
    console.print(f"[bold]{spec.model}[/] on {spec.replicas} x {spec.hardware} (tp {spec.tp}, pp {spec.pp}), "
                  f"{spec.scheduler}, {s['simulated_requests']} requests "
                  + {"trace": "timed by their trace", "static": "all arriving at once"}.get(spec.arrival,
                                                                                         f"at {spec.qps:g} QPS")
                  + f" ({spec.arrival})")
    t = Table("metric", "p50", "p90", "p99", "mean")
    for name in ("ttft", "tpot", "e2e", "e2e_normalized", "scheduling_delay"):
        t.add_row(name + " (s)", *(f"{s[f'{name}_{k}_s']:.4g}" for k in ("p50", "p90", "p99", "mean")))
    t.add_row("tbt (s)", *(f"{s[f'tbt_{k}_s']:.4g}" for k in ("p50", "p90", "p99")), "")
    console.print(t)
    console.print(f"throughput {s['throughput_tokens_per_s']:.1f} tokens/s, {s['throughput_requests_per_s']:.3f} req/s; "
                  f"preemptions {s['preemptions']}; mean batch {s['batch_size_mean']:.1f}; "
                  f"KV use mean {s['kv_use_mean']:.0%} max {s['kv_use_max']:.0%}; MFU {s.get('mfu', 0):.1%}, "
                  f"MBU {s.get('mbu', 0):.1%}")
    console.print(f"[dim]operator times: {escape(report.table_source)}; simulated in {report.wall_s * 1e3:.0f} ms[/]")


def _slo(ttft: float, ttft_q: int, tbt: float, tbt_q: int):  # noqa: ANN202
    from perfforge.serving.search import SLO

    for q in (ttft_q, tbt_q):
        if q not in (50, 90, 99):
            raise ConfigError(f"SLO quantile must be 50, 90 or 99, got {q}")
    return SLO(ttft, ttft_q, tbt, tbt_q)


@serve_app.command("capacity")
def capacity_cmd(
    ctx: typer.Context,
    ttft: float = typer.Option(2.0, "--ttft", help="TTFT SLO (s)"),
    ttft_quantile: int = typer.Option(90, "--ttft-quantile", help="50 | 90 | 99"),
    tbt: float = typer.Option(0.2, "--tbt", help="TBT SLO (s)"),
    tbt_quantile: int = typer.Option(99, "--tbt-quantile", help="50 | 90 | 99"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Highest Poisson QPS within the SLOs (bisection). Put spec options before `capacity`."""
    from perfforge.serving.search import capacity

    obj = ctx.obj or {}
    spec = _spec(obj.get("scenario"), obj.get("spec_kwargs", {}))
    _say_if_compiling(spec)
    cap = capacity(spec, _slo(ttft, ttft_quantile, tbt, tbt_quantile))
    out = {"capacity_qps": cap.qps, f"ttft_p{ttft_quantile}_s": cap.ttft_s, f"tbt_p{tbt_quantile}_s": cap.tbt_s,
           "runs": cap.runs, "violating_qps": cap.upper_qps}
    if as_json:
        print(dumps_json(out, indent=2))
    else:
        console.print(f"capacity {cap.qps:.3f} QPS (TTFT p{ttft_quantile} {cap.ttft_s:.3g} s, TBT p{tbt_quantile} "
                      f"{cap.tbt_s:.3g} s; {cap.upper_qps:.3f} QPS violates; {cap.runs} simulations)")


def _ints(text: Optional[str], flag: str) -> Optional[list[int]]:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got '{text}'") from None


@serve_app.command("search")
def search_cmd(
    ctx: typer.Context,
    hardware_list: Optional[str] = typer.Option(None, "--gpus", help="comma-separated device ids"),
    tp_list: Optional[str] = typer.Option(None, "--tps", help="comma-separated TP degrees"),
    pp_list: Optional[str] = typer.Option(None, "--pps", help="comma-separated PP degrees"),
    replica_list: Optional[str] = typer.Option(None, "--replica-counts", help="comma-separated replica counts"),
    scheduler_list: Optional[str] = typer.Option(None, "--schedulers", help="comma-separated schedulers"),
    batch_list: Optional[str] = typer.Option(None, "--batch-caps", help="comma-separated batch caps"),
    ttft: float = typer.Option(2.0, "--ttft", help="TTFT SLO (s)"),
    tbt: float = typer.Option(0.2, "--tbt", help="TBT SLO (s)"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    jobs: int = typer.Option(1, "--jobs", help="parallel workers"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list"),
) -> None:
    """Capacity and cost per million tokens for every configuration of a grid, cheapest first."""
    from rich.table import Table

    from perfforge.serving.search import search_configs

    obj = ctx.obj or {}
    spec = _spec(obj.get("scenario"), obj.get("spec_kwargs", {}))
    axes: dict[str, list[Any]] = {}
    for key, text, flag in (("hardware", hardware_list, None), ("tp", tp_list, "--tps"), ("pp", pp_list, "--pps"),
                            ("replicas", replica_list, "--replica-counts"), ("scheduler", scheduler_list, None),
                            ("max_batch_size", batch_list, "--batch-caps")):
        if text:
            axes[key] = _ints(text, flag) if flag else text.split(",")
    if not axes:
        raise ConfigError("give at least one axis to search (--gpus, --tps, --pps, --replica-counts, --schedulers, "
                          "--batch-caps)")
    _say_if_compiling(spec)
    rows = search_configs(spec, axes, _slo(ttft, 90, tbt, 99), executor=executor, jobs=jobs)
    if as_json:
        print(dumps_json(rows, indent=2, default=str))
        return
    t = Table("hardware", "tp", "pp", "replicas", "scheduler", "batch cap", "capacity QPS", "$/M tokens")
    for r in rows:
        t.add_row(r["hardware"], str(r["tp"]), str(r["pp"]), str(r["replicas"]), r["scheduler"],
                  str(r["max_batch_size"]), f"{r.get('capacity_qps', 0):.3f}" if r.get("feasible") else "-",
                  f"{r['usd_per_million_tokens']:.3f}" if "usd_per_million_tokens" in r else
                  (r.get("reason", "infeasible")[:40] if not r.get("feasible") else "no price"))
    console.print(t)
