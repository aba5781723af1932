"""``perfforge profile``: measure operators and models on the local device (needs PyTorch)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from perfforge.cli.main import app
from perfforge.core.errors import ConfigError


@app.command()
def profile(
    out: Path = typer.Option(Path("data/ground_truth/local"), "--out", help="output folder (appended, resumable)"),
    suite: str = typer.Option("standard", help="tiny | smoke | standard"),
    device: Optional[str] = typer.Option(None, help="cuda | cpu (default: cuda if present)"),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="stop starting new cases after this"),
    only: Optional[str] = typer.Option(None, help="comma list of: ceilings, models, kernels, shapes, input, llm, breakdown, neusight-e2e (shapes: seeded random GEMM, norm, softmax and pointwise shapes for `perfforge learn train --measured`; input: JPEG decode rates and loader-fed ResNet-50 steps; llm: whole-decoder prefill/decode iterations; breakdown: NeuSight's FP32 transformers with a per-op table; neusight-e2e: the same timed as NeuSight's harness times its labels; all five asked for by name)"),
    repeats: Optional[int] = typer.Option(None, help="timed repeats per case"),
    op_breakdown: bool = typer.Option(False, "--op-breakdown", help="whole-model cases also record the GPU time of every "
                                      "ATen op of one profiled call (use a fresh --out: finished cases are not rerun)"),
    launch_guard: bool = typer.Option(True, "--launch-guard/--no-launch-guard",
                                      help="GPU kernel cases: a spin kernel holds the GPU while every timed repeat "
                                      "is enqueued, so a kernel shorter than its host launch is not timed with "
                                      "the launch gap (runs before 2026-11-27 were unguarded)"),
) -> None:
    """Measure operators and whole models; write ground-truth records (JSONL) under --out."""
    from perfforge.profiling.kernels import SUITES
    from perfforge.profiling.runner import GROUPS, run_profile

    if suite not in SUITES:
        raise ConfigError(f"unknown suite '{suite}' (allowed: {', '.join(SUITES)})")
    groups = only.split(",") if only else None
    bad = sorted(set(groups or []) - set(GROUPS))
    if bad:
        raise ConfigError(f"--only: unknown group(s) {bad} (allowed: {', '.join(GROUPS)})")
    if device not in (None, "cuda", "cpu"):
        raise ConfigError(f"--device '{device}' (allowed: cuda, cpu)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("perfforge profile needs PyTorch: pip install 'perfforge[torch]'") from None

    run_profile(suite, out, device=device, max_seconds=max_seconds, only=groups, repeats=repeats,
                op_breakdown=op_breakdown, launch_guard=launch_guard)
