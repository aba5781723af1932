"""Run a profiling suite into ``DIR/measurements.jsonl`` (resumable) and ``DIR/device.json``.

A case whose key already has a successful record for the same device name is skipped, so an
interrupted run resumes and earlier measurements are never overwritten. ``max_seconds`` is a
global budget: once spent, no new case starts and the skipped keys are reported.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from perfforge.profiling import kernels, models
from perfforge.profiling.records import (
    Measurement,
    append_jsonl,
    read_jsonl,
    utc_now_iso,
)
from perfforge.profiling.timing import Case, TimingPlan, time_callable

GROUPS = ("ceilings", "models", "kernels", "shapes", "input", "llm", "breakdown", "neusight-e2e")
# "shapes" (random kernel shapes for `perfforge learn train --measured`), "input" writes a JPEG set, "llm" builds
# 7-8B decoders, "breakdown" and "neusight-e2e" run 1-3B FP32 transformers: asked for by name
DEFAULT_GROUPS = ("ceilings", "models", "kernels")
MODEL_SHARE = 0.6  # with a budget, models may use at most this fraction of it
MEASUREMENTS = "measurements.jsonl"
DEVICE_FILE = "device.json"


@dataclass
class ProfileSummary:
    suite: str
    run_id: str
    device: str
    out_path: Path
    device_path: Path
    measured: int = 0
    failed: int = 0
    resumed: int = 0
    skipped_budget: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False


def build_cases(suite: str, only: Iterable[str] | None = None,
                device_type: str = "cuda") -> list[Case]:
    """All cases of ``suite`` in priority order: ceilings, models, kernels."""
    if suite not in kernels.SUITES:
        raise ValueError(f"unknown suite {suite!r} (choose from {', '.join(kernels.SUITES)})")
    wanted = set(only) if only else set(DEFAULT_GROUPS)
    unknown = wanted - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown group(s) {sorted(unknown)} (choose from {', '.join(GROUPS)})")
    makers: dict[str, Callable[[], list[Case]]] = {
        "ceilings": lambda: kernels.ceiling_cases(suite, device_type),
        "models": lambda: models.model_cases(suite),
        "kernels": lambda: kernels.kernel_cases(suite),
        "shapes": lambda: kernels.random_shape_cases(suite),
        "input": lambda: [],  # measured by input_pipeline.measure, not as timed cases
        "llm": lambda: [],    # measured by llm_steps.measure_records
        "breakdown": lambda: [],  # measured by op_breakdown.measure_records
        "neusight-e2e": lambda: [],  # measured by neusight_e2e.measure_records
    }
    return [c for g in GROUPS if g in wanted for c in makers[g]()]


def _run(cmd: list[str]) -> str:
    """stdout of ``cmd``, or "" when it is missing, fails or hangs."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return res.stdout if res.returncode == 0 else ""


def cpu_model_name() -> str:
    """The host CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(torch: Any, dev: Any) -> dict[str, Any]:
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        info: dict[str, Any] = {
            "type": "cuda", "index": dev.index or 0, "name": p.name,
            "sm_count": p.multi_processor_count, "memory_bytes": p.total_memory,
            "l2_bytes": getattr(p, "L2_cache_size", None),
            "compute_capability": f"{p.major}.{p.minor}",
        }
        for attr in ("clock_rate", "memory_clock_rate", "memory_bus_width", "uuid"):
            if hasattr(p, attr):
                info[attr] = str(getattr(p, attr)) if attr == "uuid" else getattr(p, attr)
        fields_ = ["driver_version", "clocks.max.sm", "clocks.max.memory", "clocks.sm",
                   "clocks.mem", "power.limit", "pstate", "pcie.link.gen.max", "pcie.link.width.max"]
        for query in (fields_, fields_[:1]):  # fall back to the driver alone
            out = _run(["nvidia-smi", f"--id={dev.index or 0}", f"--query-gpu={','.join(query)}",
                        "--format=csv,noheader,nounits"]).strip().splitlines()
            vals = [v.strip() for v in out[0].split(",")] if out else []
            if len(vals) == len(query):
                info.update({"driver" if f == "driver_version" else f.replace(".", "_"): v
                             for f, v in zip(query, vals, strict=True)})
                break
        return info
    name = cpu_model_name()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"type": "cpu", "name": name, "cpu_count": os.cpu_count(), "memory_bytes": mem,
            "torch_threads": torch.get_num_threads()}


def software_info(torch: Any) -> dict[str, Any]:
    def ver(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": cudnn, "torchvision": ver("torchvision"),
            "transformers": ver("transformers"), "platform": platform.platform(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "fp16_reduced_precision_reduction":
                bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)}


def _fmt(rec: Measurement) -> str:
    if rec.error:
        return f"ERROR {rec.error}"
    assert rec.latency_s is not None
    parts = [f"{rec.latency_s * 1e3:.4g} ms"]
    if rec.throughput_per_s:
        parts.append(f"{rec.throughput_per_s:.4g} samples/s")
    if rec.achieved_flop_per_s:
        parts.append(f"{rec.achieved_flop_per_s / 1e12:.4g} TFLOP/s")
    if rec.achieved_bytes_per_s:
        parts.append(f"{rec.achieved_bytes_per_s / 1e9:.4g} GB/s")
    return "  ".join(parts)


def _printer() -> Callable[[str], None]:
    try:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        return lambda s: console.print(s, markup=False)
    except ImportError:
        return lambda s: print(s, flush=True)


def measure_case(case: Case, dev: Any, base: Measurement, plan: TimingPlan,
                 flush_bytes: int, op_breakdown: bool = False, launch_guard: bool = True) -> Measurement:
    """Run one case; any exception (OOM, missing library) becomes ``error`` on the record. With
    ``op_breakdown`` a whole-model case also records, from one more call under the PyTorch profiler, the time
    of every ATen op (``extra.ops``, ``extra.kernel_sum_s``; ``perfforge.profiling.op_breakdown.op_table``).
    ``launch_guard`` times kernel cases on a GPU behind a spin kernel (``time_callable``), so a kernel shorter
    than its host launch is not timed with the launch gap; ``extra.launch_guard`` records the outcome. Whole-model
    cases are never guarded: their host time is part of the step."""
    import torch

    cuda = dev.type == "cuda"
    rec = replace(base, key=case.key, kind=case.kind, op=case.op, params=dict(case.params),
                  dtype=case.dtype, group=case.group, flop=case.flop, bytes=case.bytes,
                  l2_flush=case.l2_flush and cuda, timer="cuda_event" if cuda else "wall",
                  extra=dict(case.extra), date=utc_now_iso())
    fn = None
    try:
        kernels.set_precision_flags(case.dtype)
        torch.manual_seed(0)
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        fn, extra = case.setup(dev)
        rec.extra.update(extra)
        res = time_callable(fn, device=dev, warmup=plan.warmup, repeats=plan.repeats,
                            l2_flush=rec.l2_flush, max_time_s=plan.max_time_s,
                            min_repeats=plan.min_repeats, flush_bytes=flush_bytes,
                            launch_guard=launch_guard and case.kind == "kernel")
        if res.guard != "off":
            rec.extra["launch_guard"] = res.guard
        rec.latency_s, rec.latency_p10_s, rec.latency_p90_s = res.median_s, res.p10_s, res.p90_s
        rec.repeats, rec.warmup = res.repeats, res.warmup
        if res.median_s > 0:
            if case.samples:
                rec.throughput_per_s = case.samples / res.median_s
            if case.flop:
                rec.achieved_flop_per_s = case.flop / res.median_s
            if case.bytes:
                rec.achieved_bytes_per_s = case.bytes / res.median_s
        if cuda and case.kind == "model":
            rec.peak_memory_bytes = int(torch.cuda.max_memory_allocated(dev))
        if op_breakdown and case.kind == "model":
            from perfforge.profiling.op_breakdown import op_table

            rec.extra["ops"], rec.extra["kernel_sum_s"] = op_table(fn, cuda)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, never dropped
        msg = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        rec.error = msg if isinstance(exc, models.MissingDependency) else f"{type(exc).__name__}: {msg}"
    del fn
    if rec.error or case.kind == "model":
        _free_memory(torch, cuda)
    return rec


def _free_memory(torch: Any, cuda: bool) -> None:
    gc.collect()
    if cuda:
        try:
            torch.cuda.empty_cache()
        except RuntimeError:  # a sticky CUDA error: later cases will record it
            pass


def run_profile(suite: str = "standard", out_dir: str | os.PathLike[str] = ".",
                device: str | None = None, max_seconds: float | None = None,
                only: Iterable[str] | None = None, repeats: int | None = None,
                cases: Sequence[Case] | None = None,
                log: Callable[[str], None] | None = None, op_breakdown: bool = False,
                launch_guard: bool = True) -> ProfileSummary:
    """Measure ``suite`` (or the given ``cases``) on ``device`` into ``out_dir`` (``launch_guard``: see
    ``measure_case``)."""
    start = time.monotonic()
    try:
        import torch
    except ImportError:
        raise RuntimeError("perfforge profile needs PyTorch installed") from None
    say = log or _printer()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True
    todo = list(cases) if cases is not None else build_cases(suite, only, dev.type)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    dinfo, sinfo = device_info(torch, dev), software_info(torch)
    flush_bytes = 2 * int(dinfo.get("l2_bytes") or 0) or 256 * 1024 * 1024
    summary = ProfileSummary(suite=suite, run_id=run_id, device=str(dinfo["name"]),
                             out_path=out / MEASUREMENTS, device_path=out / DEVICE_FILE)
    summary.device_path.write_text(json.dumps(
        {"schema": "perfforge.device/1", "run_id": run_id, "suite": suite, "date": utc_now_iso(),
         "device": dinfo, "software": sinfo, "argv": sys.argv}, indent=2) + "\n")
    done = {r.key for r in read_jsonl(summary.out_path)
            if r.ok and r.device.get("name") == dinfo["name"]}
    base = Measurement(key="", kind="", op="", params={}, dtype="", suite=suite, device=dinfo,
                       software=sinfo, run_id=run_id)
    say(f"perfforge profile: suite={suite} device={dinfo['name']} cases={len(todo)} "
        f"already-done={sum(c.key in done for c in todo)} out={summary.out_path}")
    model_time, group = 0.0, ""
    try:
        for i, case in enumerate(todo, 1):
            if case.key in done:
                summary.resumed += 1
                continue
            elapsed = time.monotonic() - start
            over_models = (case.group == "models" and max_seconds is not None
                           and model_time > MODEL_SHARE * max_seconds)
            if (max_seconds is not None and elapsed > max_seconds) or over_models:
                summary.skipped_budget.append(case.key)
                continue
            if group == "models" and case.group != "models":
                models.release()
            group = case.group
            plan = case.plan or TimingPlan()
            if repeats:
                plan = replace(plan, repeats=repeats)
            t0 = time.monotonic()
            rec = measure_case(case, dev, base, plan, flush_bytes, op_breakdown, launch_guard)
            if case.group == "models":
                model_time += time.monotonic() - t0
            append_jsonl(summary.out_path, [rec])
            if rec.ok:
                done.add(case.key)
            summary.measured += rec.ok
            summary.failed += not rec.ok
            say(f"[{i}/{len(todo)} {time.monotonic() - start:6.1f}s] {case.key}: {_fmt(rec)}")
        if only and "input" in only:
            from perfforge.profiling import input_pipeline

            summary.measured += _run_group(lambda emit: input_pipeline.measure(
                suite, dev, base, out / "jpeg-dataset", done, emit, say), summary)
        if only and "llm" in only:
            from perfforge.profiling import llm_steps

            summary.measured += _run_group(lambda emit: llm_steps.measure_records(
                suite, dev, base, done, emit, say), summary)
        if only and "breakdown" in only:
            from perfforge.profiling import op_breakdown

            summary.measured += _run_group(lambda emit: op_breakdown.measure_records(
                suite, dev, base, done, emit, say), summary)
        if only and "neusight-e2e" in only:
            from perfforge.profiling import neusight_e2e

            summary.measured += _run_group(lambda emit: neusight_e2e.measure_records(
                suite, dev, base, done, emit, say), summary)
    except KeyboardInterrupt:
        summary.interrupted = True
        say("interrupted: completed records are saved; rerun the same command to resume")
    finally:
        models.release()
    summary.elapsed_s = time.monotonic() - start
    _report_skipped(summary, say)
    say(f"done: {summary.measured} measured, {summary.failed} failed, {summary.resumed} resumed, "
        f"{len(summary.skipped_budget)} skipped (budget) in {summary.elapsed_s:.1f}s")
    return summary


def _run_group(measure: Callable[[Callable[[Measurement], None]], int], summary: ProfileSummary) -> int:
    """Run a group that measures outside the timed-case loop (``input``, ``llm``, ``breakdown``); records are appended as
    they come. Returns how many succeeded."""
    def emit(rec: Measurement) -> None:
        append_jsonl(summary.out_path, [rec])
        summary.failed += not rec.ok

    failed_before = summary.failed
    ran = measure(emit)
    return ran - (summary.failed - failed_before)


def _report_skipped(summary: ProfileSummary, say: Callable[[str], None]) -> None:
    if not summary.skipped_budget:
        return
    counts = Counter("/".join(k.split("/")[:3]) for k in summary.skipped_budget)
    say(f"budget exhausted: {len(summary.skipped_budget)} case(s) not started:")
    for name, n in counts.most_common():
        say(f"  {n:4d}  {name}")
