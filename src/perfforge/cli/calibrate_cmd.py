"""``perfforge calibrate``: fit the analytical engine's constants to a profile run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
import yaml

from perfforge.cli.main import app, console


@app.command()
def calibrate(
    measurements: Path = typer.Argument(..., help="measurements.jsonl(.gz) written by `perfforge profile`"),
    architecture: Optional[str] = typer.Option(None, help="block to fit (default: the measured device's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write a calibration YAML usable with --calibration"),
    report: Optional[Path] = typer.Option(None, "--report", help="write the fit report (JSON)"),
) -> None:
    """Fit calibration constants to measured kernels (and host overhead to host-bound model runs)."""
    from perfforge.cli.output import write_atomic
    from perfforge.evaluation.calibrate import calibrate as run_fit
    from perfforge.evaluation.calibrate import calibration_blocks

    block, summary = run_fit(str(measurements), architecture)
    doc = {"schema": "perfforge.calibration/1", "architectures": calibration_blocks(block, summary["architecture"])}
    text = (f"# fitted by `perfforge calibrate {measurements}` on {summary['device_name']} (run {summary['run_id']})\n"
            + yaml.safe_dump(doc, sort_keys=False))
    if out:
        write_atomic(out, text)
    if report:
        write_atomic(report, json.dumps(summary, indent=2, default=str))
    if summary["kernel_cases"]:
        console.print(f"{summary['kernel_cases']} kernels: mean |ln(pred/meas)| "
                      f"{summary['mean_abs_log_error_before']:.3f} -> {summary['mean_abs_log_error_after']:.3f}")
    if "loader_samples_per_s_per_worker" in block:
        console.print(f"data loader: {block['loader_samples_per_s_per_worker']:g} samples/s per worker "
                      "(median of the run's CPU-only input-pipeline cases)")
    print(text)
