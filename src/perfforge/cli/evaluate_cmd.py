"""``perfforge evaluate SUITE``: run an accuracy experiment and write its results and report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from perfforge.cli.main import app, console


@app.command()
def evaluate(
    suite: str = typer.Argument(..., help="built-in suite name (core, ...) or a suite YAML path"),
    out: Path = typer.Option(Path("data/evaluation"), "--out", help="results go to OUT/<suite>/"),
    root: Path = typer.Option(Path("."), "--root", help="folder the suite's data paths are relative to"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="worker processes"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
) -> None:
    """Predict every ground-truth case of a suite; write results.json/csv, report.md and report.html."""
    from perfforge.evaluation.harness import run_suite
    from perfforge.evaluation.report import write_outputs
    from perfforge.evaluation.suite import load_suite

    spec = load_suite(suite)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"evaluate {spec.name}", total=None)
        result = run_suite(spec, root, jobs=jobs, executor=executor,
                           progress=lambda i, n: bar.update(task, completed=i, total=n))
    paths = write_outputs(result, out / spec.name)
    rows = result["rows"]
    ok = sum(r["predicted_s"] is not None for r in rows)
    console.print(f"{spec.name}: {ok} of {len(rows)} predictions made in {result['wall_s']:.1f} s; "
                  f"report: {paths['report.md']}")
