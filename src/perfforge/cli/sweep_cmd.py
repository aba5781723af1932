"""``perfforge sweep``: predict a grid of scenarios into a resumable store."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress
from rich.table import Table

from perfforge.cli.main import app, console


@app.command()
def sweep(
    spec_file: Path = typer.Argument(..., help="sweep YAML: name, grid (field -> list), fixed"),
    store: Path = typer.Option(Path("sweeps.sqlite"), "--store", help="SQLite store (appended, resumable)"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="parallel workers"),
    export: Optional[Path] = typer.Option(None, "--export", help="write this sweep's rows as CSV"),
    report: Optional[Path] = typer.Option(None, "--report", help="write this sweep's rows as a Markdown table"),
) -> None:
    """Run every grid point not already in the store; print the best points."""
    from perfforge.cli.output import write_atomic
    from perfforge.evaluation.sweep import SweepStore, load_sweep, run_sweep

    spec = load_sweep(spec_file)
    db = SweepStore(store)
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"sweep {spec.name}", total=None)
            summary = run_sweep(spec, db, executor=executor, jobs=jobs,
                                progress=lambda i, n: bar.update(task, completed=i, total=n))
        from perfforge.evaluation.sweep import point_key

        rows = db.rows_for([point_key(p) for p in spec.points()])
    finally:
        db.close()
    console.print(f"{spec.name}: {summary.total} points, {summary.skipped} already stored, {summary.computed} computed "
                  f"({summary.errors} errors) in {summary.wall_s:.1f} s -> {store}")
    ok = sorted((r for r in rows if r["status"] == "ok" and r["fits"]), key=lambda r: -r["throughput_samples_per_s"])
    table = Table("point", "step", "samples/s", "MFU", "memory GB", title="Fastest points that fit", title_justify="left")
    for r in ok[:10]:
        table.add_row(", ".join(f"{k}={r['point'][k]}" for k in sorted(spec.grid)), f"{r['step_time_s'] * 1e3:.2f} ms",
                      f"{r['throughput_samples_per_s']:,.1f}", f"{100 * r['mfu']:.1f}%", f"{r['memory_bytes'] / 1e9:.1f}")
    console.print(table)
    if report:
        fields = sorted(spec.grid)
        # the scenario's engine (analytical unless the spec names one); a grid over engines names each per row
        engine = ("the engine each row names" if "engine" in spec.grid
                  else f"perfforge's {spec.fixed.get('engine', 'analytical')} engine")
        lines = [f"# Sweep {spec.name}", "", f"Fixed: {', '.join(f'{k}={v}' for k, v in sorted(spec.fixed.items()))}.",
                 f"Regenerate: `perfforge sweep {spec_file} --store STORE --report {report}`. The grid's points are "
                 f"predictions of {engine}, not measurements.", "",
                 "| " + " | ".join(fields) + " | step (ms) | samples/s | MFU | exposed comm (ms) | comm share | fits |",
                 "|" + "---|" * (len(fields) + 6)]
        for r in rows:
            if r["status"] != "ok":
                lines.append("| " + " | ".join(str(r["point"].get(f)) for f in fields) + f" | error: {r['error']} |")
                continue
            x = r.get("extra") or {}
            lines.append("| " + " | ".join(str(r["point"].get(f)) for f in fields)
                         + f" | {r['step_time_s'] * 1e3:.2f} | {r['throughput_samples_per_s']:,.0f} | {100 * r['mfu']:.1f}% | "
                         f"{1e3 * x.get('exposed_comm_s', 0.0):.3f} | {100 * x.get('comm_share', 0.0):.1f}% | "
                         f"{'yes' if r['fits'] else 'no'} |")
        write_atomic(report, "\n".join(lines) + "\n")
    if export:
        buf = io.StringIO()
        fields = sorted({k for r in rows for k in r["point"]})
        writer = csv.writer(buf)
        writer.writerow([*fields, "status", "error", "step_time_s", "throughput_samples_per_s", "mfu", "memory_bytes", "fits"])
        for r in rows:
            writer.writerow([r["point"].get(f) for f in fields] + [r["status"], r["error"], r["step_time_s"],
                            r["throughput_samples_per_s"], r["mfu"], r["memory_bytes"], r["fits"]])
        write_atomic(export, buf.getvalue())
