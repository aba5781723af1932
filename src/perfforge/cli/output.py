"""Rendering results for people (rich tables) and files (CSV, JSON, Chrome trace), written atomically."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from perfforge.core.files import write_atomic  # noqa: F401  (re-exported for the CLI commands)
from perfforge.core.units import fmt_bytes, fmt_count, fmt_time
from perfforge.result import Result

BREAKDOWN_FIELDS = ["name", "kind", "layer", "phase", "time_s", "flops", "bytes", "bound", "start_s"]


def breakdown_csv(result: Result) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=BREAKDOWN_FIELDS)
    writer.writeheader()
    for row in result.to_dict()["breakdown"]:
        writer.writerow({k: row[k] for k in BREAKDOWN_FIELDS})
    return buf.getvalue()


def chrome_trace_json(result: Result) -> str:
    return json.dumps(result.to_chrome_trace())


def _group_table(title: str, key: str, groups: list[dict[str, Any]], total: float, limit: int | None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    for col in ("ops", "time", "share", "FLOPs", "bytes"):
        table.add_column(col, justify="right")
    shown = groups if limit is None else groups[:limit]
    for g in shown:
        table.add_row(str(g[key]), str(g["ops"]), fmt_time(g["time_s"]), f"{100 * g['time_s'] / total:.1f}%",
                      fmt_count(g["flops"]), fmt_bytes(g["bytes"]))
    if limit is not None and len(groups) > limit:
        table.add_row(f"... {len(groups) - limit} more", "", "", "", "", "")
    return table


def _op_timer_row(result: Result) -> tuple[str, str] | None:
    """Which ops the learned backend timed and which fell back to the analytical engine (None for analytical)."""
    x = result.extra
    if x.get("backend") != "learned":
        return None
    text = f"learned kernel model {x.get('learned_model', '?')}: {x.get('learned_ops', 0):,} ops"
    fallback = x.get("fallback_ops") or {}
    if fallback:
        kinds = ", ".join(f"{kind} {n}" for kind, n in fallback.items())
        text += f"; analytical engine for {sum(fallback.values()):,} it does not cover ({kinds})"
    low, high = x.get("kernel_time_low_s"), x.get("kernel_time_high_s")
    if low and high:
        text += f"; kernel time 80% interval {fmt_time(low)} to {fmt_time(high)}"
    return "op timer", escape(text)


def print_result(result: Result, console: Console, *, layer_limit: int | None = 20) -> None:
    total = result.step_time_s or 1.0
    console.print(_group_table("Time by op class", "kind", result.group_by("kind"), total, None))
    by_layer = result.group_by("layer")
    console.print(_group_table("Time by layer (largest first)", "layer", by_layer, total, layer_limit))
    mem = result.memory
    precision = f"{result.dtype} autocast" if result.extra.get("precision") == "amp" else result.dtype
    summary = Table(title=f"{result.model} on {result.hardware} ({result.mode}, {precision}, batch {result.batch}"
                          f"{', seq ' + str(result.seq) if result.seq > 1 else ''})", title_justify="left",
                    show_header=False)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    rows = [
        ("step time", fmt_time(result.step_time_s)),
        ("throughput", f"{result.throughput_samples_per_s:,.1f} samples/s"),
        ("tokens/s", f"{result.throughput_tokens_per_s:,.0f}") if result.tokens_per_step > result.samples_per_step else None,
        ("parameters", f"{result.params:,}"),
        ("FLOPs per step", fmt_count(result.flops_per_step)),
        ("MFU", f"{100 * result.mfu:.1f}%"),
        ("memory", f"{fmt_bytes(mem.total)} of {fmt_bytes(mem.usable)} usable "
                   f"(weights {fmt_bytes(mem.weights)}, grads {fmt_bytes(mem.gradients)}, optimizer "
                   f"{fmt_bytes(mem.optimizer_states)}, activations {fmt_bytes(mem.activations)}, KV "
                   f"{fmt_bytes(mem.kv_cache)})"),
        ("fits", "yes" if mem.fits else "NO: does not fit in device memory"),
        ("engine", escape(f"{result.engine} ({result.provenance.get('calibration', '')})")),
        _op_timer_row(result),
    ]
    for row in rows:
        if row:
            summary.add_row(*row)
    console.print(summary)
    if result.unmodelled:
        console.print(f"[yellow]warning:[/] {len(result.unmodelled)} ops not modelled and left out: "
                      f"{', '.join(result.unmodelled[:5])}")
