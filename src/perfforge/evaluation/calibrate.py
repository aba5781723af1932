"""Fit the analytical engine's calibration constants to measured kernels.

Coordinate descent in log space over a named subset of constants, minimising the mean absolute log
error |ln(predicted / measured)| over kernel records (a symmetric, scale-free error: 2x too slow and 2x
too fast cost the same). Deterministic: no random restarts, fixed multiplier schedule.
The host (CPU issue) overhead cannot be seen in queued kernel timings; ``fit_host_overhead`` takes it
from whole-model runs that are bound by the host, which the caller must then leave out of evaluation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.engines.analytical.calibration import Calibration
from perfforge.engines.analytical.roofline import op_time
from perfforge.evaluation.measured import KernelCase
from perfforge.system.device import DeviceSpec
from perfforge.workload.op import OpKind

# constant -> (lower bound, upper bound)
FITTABLE: dict[str, tuple[float, float]] = {
    "gemm_max_efficiency": (0.3, 1.0),
    "k_half": (0.0, 1024.0),
    "misaligned_efficiency": (0.02, 1.0),
    "conv_efficiency": (0.2, 1.5),
    "attention_efficiency": (0.1, 1.0),
    "memory_max_efficiency": (0.3, 1.0),
    "memory_half_bytes": (1e3, 1e8),
    "normalization_memory_efficiency": (0.2, 1.0),
    "kernel_overhead_s": (0.0, 2e-5),
    "vector_efficiency": (0.05, 1.0),
}
_SCHEDULE = (2.0, 1.5, 1.25, 1.1, 1.05)


@dataclass(frozen=True)
class FitReport:
    calibration: Calibration
    before: float          # mean |ln(pred/meas)| with the starting constants
    after: float
    cases: int
    fitted: dict[str, float]


def mean_abs_log_error(cases: list[KernelCase], device: DeviceSpec, cal: Calibration) -> float:
    errs = []
    for case in cases:
        pred = op_time(case.op, device, cal, case.compute_dtype).time_s
        errs.append(abs(math.log(pred / case.record["latency_s"])))
    return sum(errs) / len(errs)


def fit_kernels(cases: list[KernelCase], device: DeviceSpec, start: Calibration,
                params: tuple[str, ...] = tuple(FITTABLE)) -> FitReport:
    if not cases:
        raise ConfigError("no kernel measurements to fit (the file has no kernel records perfforge can map)")
    unknown = set(params) - set(FITTABLE)
    if unknown:
        raise ConfigError(f"cannot fit {sorted(unknown)} (fittable: {', '.join(FITTABLE)})")
    values: dict[str, Any] = start.model_dump()
    best = before = mean_abs_log_error(cases, device, start)
    for mult in _SCHEDULE:
        for _ in range(3):
            improved = False
            for name in params:
                lo, hi = FITTABLE[name]
                current = values[name]
                candidates = [current * mult, current / mult] if current > 0 else [lo + (hi - lo) * 1e-3]
                for cand in candidates:
                    cand = min(hi, max(lo, cand))
                    trial = Calibration.model_validate({**values, name: cand})
                    err = mean_abs_log_error(cases, device, trial)
                    if err < best - 1e-6:
                        best, values[name], improved = err, cand, True
            if not improved:
                break
    fitted = {name: values[name] for name in params}
    return FitReport(Calibration.model_validate(values), before, best, len(cases), fitted)


def fit_host_overhead(host_bound: list[tuple[float, int]]) -> float:
    """Median of measured step time / ops issued, over (measured_s, ops) pairs of host-bound runs."""
    if not host_bound:
        raise ConfigError("no host-bound model runs to fit the host overhead")
    return statistics.median(t / n for t, n in host_bound)


# Whole-model runs small enough that the GPU waits on the host: they calibrate the host overhead and
# are therefore excluded from model-level evaluation (see ``is_host_calibration_record``).
HOST_CALIBRATION_RUNS = (
    ("resnet50", "inference", 1, None),
    ("gpt2", "inference", 1, 128),
    ("bert-base", "inference", 1, 128),
)


def fit_per_worker_rate(records: Iterable[Mapping[str, Any]]) -> float:
    """Median per-worker images/s of the CPU-only ``jpeg_train_pipeline`` records (measurement dicts)."""
    rates = [r["throughput_per_s"] / r["params"]["workers"] for r in records
             if r.get("op") == "jpeg_train_pipeline" and not r.get("error") and r.get("throughput_per_s")]
    if not rates:
        raise ValueError("no successful jpeg_train_pipeline records")
    return float(statistics.median(rates))


def fit_conv_nchw_efficiency(records: Iterable[Mapping[str, Any]], device_id: str,
                             architecture: str | None = None) -> dict[str, dict[str, float]]:
    """Per compute dtype, the ``conv_nchw_efficiency`` that makes the analytical engine's NCHW/NHWC step-time
    ratio equal the measured one, from pairs of model records that differ only in ``channels_last``.

    Only convolutions slow down in NCHW, so with the NHWC prediction split into conv time C and the rest O,
    ``(O + C / eff) / (O + C) = measured ratio`` gives ``eff = C / (ratio * (O + C) - O)``. Returns
    {dtype: {"measured_ratio", "conv_share", "efficiency"}}; dtypes whose ratio is at most 1 are left out."""
    from perfforge.api import predict, resolve_workload

    recs = [r for r in records if r.get("kind") == "model" and "channels_last" in r.get("params", {})
            and not r.get("error") and r.get("latency_s")]
    key = lambda r: (r["params"]["model"], r["params"]["mode"], r["params"]["batch"], r["dtype"])  # noqa: E731
    nhwc = {key(r): r for r in recs if r["params"]["channels_last"]}
    out: dict[str, dict[str, float]] = {}
    for r in recs:
        k = key(r)
        if r["params"]["channels_last"] or k not in nhwc:
            continue
        ratio = r["latency_s"] / nhwc[k]["latency_s"]
        w = resolve_workload(k[0], mode=k[1], batch=k[2], dtype=k[3])
        res = predict(w, device_id, mode=k[1], optimizer=r["params"].get("optimizer") or "sgd_momentum",
                      calibration=None)
        conv = sum(x.time_s for x in res.breakdown if x.kind == "conv2d")
        if ratio <= 1.0 or conv <= 0:
            continue
        out[k[3]] = {"measured_ratio": ratio, "conv_share": conv / res.step_time_s,
                     "efficiency": conv / (ratio * res.step_time_s - (res.step_time_s - conv))}
    return out


def traced_op_count(rec: Mapping[str, Any]) -> int | None:
    """Forward ops of the measured HF module traced on the meta device (the ``hf-trace`` graph), or None
    where it cannot be traced here (no torch/transformers, or a model the tracer does not build)."""
    from perfforge.evaluation.variants import VariantUnavailable, build

    p = rec["params"]
    try:
        w = build("hf-trace", p["model"], mode="inference", batch=p["batch"], seq=p.get("seq"), dtype=rec["dtype"],
                  head=p.get("head"), amp=p.get("amp"))
    except VariantUnavailable:
        return None
    return len(w.ops)


def is_host_calibration_record(rec: dict[str, Any]) -> bool:
    p = rec.get("params", {})
    return (p.get("model"), p.get("mode"), p.get("batch"), p.get("seq")) in HOST_CALIBRATION_RUNS


def calibrate(measurements: str, architecture: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit an architecture's constants to one profile run. Returns (calibration block, report)."""
    from perfforge.api import resolve_workload
    from perfforge.engines.analytical.calibration import load_calibration, priors_calibration
    from perfforge.evaluation.measured import device_id, kernel_cases, read_measurements
    from perfforge.system.catalog import get_device

    records = read_measurements(measurements)
    if not records:
        raise ConfigError(f"{measurements}: no successful measurements")
    device = get_device(device_id(records[0]))
    arch = architecture or device.architecture
    cases, unmapped = kernel_cases(records)
    try:
        loader_rate: float | None = fit_per_worker_rate(records)
    except ValueError:  # no `--only input` records in this run
        loader_rate = None
    # the kernel constants start from the priors, so a fit depends on this run alone, not on an earlier fit
    priors = priors_calibration()
    start = load_calibration(arch).model_copy(update={k: getattr(priors, k) for k in FITTABLE})
    if cases or loader_rate is None:
        report = fit_kernels(cases, device, start)
    else:  # an input-pipeline run alone: nothing to fit on kernels
        err = float("nan")
        report = FitReport(start, err, err, 0, {})
    host_runs, traced_runs = [], []
    for rec in records:
        if rec.get("kind") == "model" and is_host_calibration_record(rec):
            p = rec["params"]
            w = resolve_workload(p["model"], mode="inference", batch=p["batch"], seq=p.get("seq"), dtype=rec["dtype"])
            host_runs.append((rec["latency_s"], len(w.ops)))
            traced = traced_op_count(rec)
            if traced:
                traced_runs.append((rec["latency_s"], traced))
    block = dict(report.fitted)
    if loader_rate is not None:
        block["loader_samples_per_s_per_worker"] = round(loader_rate, 1)
    if host_runs:
        block["host_overhead_s"] = fit_host_overhead(host_runs)
    if traced_runs:
        block["host_overhead_traced_op_s"] = fit_host_overhead(traced_runs)
    summary = {
        "measurements": str(measurements), "device": device.id, "architecture": arch,
        "device_name": records[0]["device"].get("name"), "run_id": records[0].get("run_id"),
        "software": records[0].get("software"), "kernel_cases": report.cases, "unmapped": unmapped,
        "mean_abs_log_error_before": report.before, "mean_abs_log_error_after": report.after,
        "host_calibration_runs": [list(r) for r in HOST_CALIBRATION_RUNS], "fitted": block,
    }
    return block, summary


# Properties of the host (its CPU and framework), not of the GPU: a calibration file puts them in the `default`
# block, so they apply to every GPU on that host, whatever its architecture.
HOST_KEYS = ("host_overhead_s", "host_overhead_traced_op_s", "loader_samples_per_s_per_worker")


def calibration_blocks(block: dict[str, Any], architecture: str) -> dict[str, dict[str, Any]]:
    """The ``architectures`` section of a calibration file for a fitted block: host figures under ``default``,
    kernel constants under their architecture (empty sections left out)."""
    host = {k: v for k, v in block.items() if k in HOST_KEYS}
    device = {k: v for k, v in block.items() if k not in HOST_KEYS}
    return {name: part for name, part in (("default", host), (architecture, device)) if part}


def _timing_parts(cases: list[KernelCase], device: DeviceSpec, cal: Calibration) -> Any:
    """Per case: compute, memory and overhead seconds, compute efficiency, measured seconds (numpy rows)."""
    import numpy as np

    return np.array([[t.compute_s, t.memory_s, t.overhead_s, t.compute_efficiency, c.record["latency_s"]]
                     for c in cases for t in [op_time(c.op, device, cal, c.compute_dtype)]])


def _grid_fit(groups: list[tuple[list[KernelCase], DeviceSpec]], cal: Calibration, grid: list[float],
              rescale: Callable[[Any, float], Any]) -> dict[str, float]:
    """The grid value minimising the mean |ln(pred/meas)| with every GPU weighted the same; ``rescale(parts, v)``
    turns ``_timing_parts`` (taken at the neutral value) into predicted seconds."""
    import numpy as np

    per_gpu = []
    for cases, device in groups:
        if cases:
            parts = _timing_parts(cases, device, cal)
            per_gpu.append([float(np.mean(np.abs(np.log(rescale(parts, v) / parts[:, 4])))) for v in grid])
    if not per_gpu:
        raise ConfigError("no matching FP32 kernel measurements to fit")
    mean = [sum(col) / len(col) for col in zip(*per_gpu)]
    best = min(range(len(grid)), key=lambda i: (mean[i], abs(grid[i] - 1.0)))
    neutral = min(range(len(grid)), key=lambda i: abs(grid[i] - 1.0))
    return {"value": grid[best], "before": mean[neutral], "after": mean[best], "gpus": len(per_gpu)}


def fit_fp32_gemm_scale(groups: list[tuple[list[KernelCase], DeviceSpec]], cal: Calibration) -> dict[str, float]:
    """``fp32_gemm_scale`` (grid 0.30-2.00, step 0.01) for one architecture's FP32 GEMMs (matmul, linear, bmm)."""
    import numpy as np

    base = cal.model_copy(update={"fp32_gemm_scale": 1.0})
    groups = [([c for c in cases if c.compute_dtype is DType.FP32 and c.op.kind in (OpKind.MATMUL, OpKind.BMM)], d)
              for cases, d in groups]

    def rescale(p: Any, v: float) -> Any:
        compute = p[:, 0] * p[:, 3] / np.minimum(1.0, p[:, 3] * v)
        return np.maximum(compute, p[:, 1]) + p[:, 2]

    return _grid_fit(groups, base, [round(0.3 + 0.01 * i, 2) for i in range(171)], rescale)


def fit_conv3x3_fp32_speedup(groups: list[tuple[list[KernelCase], DeviceSpec]], cal: Calibration) -> dict[str, float]:
    """``conv3x3_fp32_speedup`` (grid 1.00-4.00, step 0.01) for one architecture's FP32 3x3 stride-1 convolutions,
    with the architecture's other constants (its ``fp32_gemm_scale`` included) as given."""
    import numpy as np

    base = cal.model_copy(update={"conv3x3_fp32_speedup": 1.0})
    groups = [([c for c in cases if c.compute_dtype is DType.FP32 and c.op.attrs.get("kernel") == 3
                and c.op.attrs.get("stride") == 1], d) for cases, d in groups]
    return _grid_fit(groups, base, [round(1.0 + 0.01 * i, 2) for i in range(301)],
                     lambda p, v: np.maximum(p[:, 0] / v, p[:, 1]) + p[:, 2])


# Kernels at least this large stream at their asymptotic bandwidth (the size term is within 1% of it), and in
# NeuSight's data they sit well above its ~30 us per-call timing floor, which smaller kernels hit.
MEMORY_FIT_MIN_BYTES = 1e8


def fit_memory_efficiencies(groups: list[tuple[list[KernelCase], DeviceSpec]], cal: Calibration,
                            min_bytes: float = MEMORY_FIT_MIN_BYTES) -> dict[str, dict[str, float]]:
    """``memory_max_efficiency`` on streaming kernels (pointwise ops and copies) and then
    ``normalization_memory_efficiency`` on normalisation-class kernels (layer/RMS norm, softmax), both on kernels of
    at least ``min_bytes`` that the architecture's constants predict memory-bound, every GPU weighted the same."""
    import numpy as np

    from perfforge.engines.analytical.roofline import is_normalization

    base = cal.model_copy(update={"memory_max_efficiency": 1.0, "normalization_memory_efficiency": 1.0})

    def select(norm: bool) -> list[tuple[list[KernelCase], DeviceSpec]]:
        """Large kernels of one kind that the neutral constants predict memory-bound."""
        out = []
        for cases, device in groups:
            keep = [c for c in cases if c.op.bytes >= min_bytes
                    and (is_normalization(c.op) if norm else c.op.kind is OpKind.ELEMENTWISE)]
            if keep:
                keep = [c for c, row in zip(keep, _timing_parts(keep, device, base)) if row[1] >= row[0]]
            out.append((keep, device))
        return out

    grid = [round(0.2 + 0.005 * i, 3) for i in range(161)]
    streaming = _grid_fit(select(False), base, grid, lambda p, v: np.maximum(p[:, 0], p[:, 1] / v) + p[:, 2])
    fitted = base.model_copy(update={"memory_max_efficiency": streaming["value"]})
    norms = _grid_fit(select(True), fitted, grid, lambda p, v: np.maximum(p[:, 0], p[:, 1] / v) + p[:, 2])
    return {"memory_max_efficiency": streaming, "normalization_memory_efficiency": norms}


def neusight_fit_cases(folder: str, ops: list[str], *,
                       exclude_per_file: int = 100) -> dict[str, list[tuple[list[KernelCase], DeviceSpec]]]:
    """NeuSight's FP32 kernels of ``ops`` (its file names: bmm, linear, conv) grouped by architecture, leaving out
    the ``exclude_per_file`` evenly spaced rows per file that the ``kernels`` suite scores (those stay out of
    sample) and the test-only kernels of NeuSight's OOD GPUs H100 and A100 80GB PCIe
    (``neusight.TEST_ONLY_KERNELS``: test data for every engine)."""
    from perfforge.evaluation.measured import device_id, kernel_cases
    from perfforge.evaluation.neusight import is_test_kernel, read_kernels
    from perfforge.system.catalog import get_device

    scored = {r["key"] for r in read_kernels(folder, ops=ops, per_file=exclude_per_file)}
    by_device: dict[str, list[dict[str, Any]]] = {}
    for r in read_kernels(folder, ops=ops, per_file=None):
        if r["key"] not in scored and not is_test_kernel(device_id(r), r["op"]):
            by_device.setdefault(device_id(r), []).append(r)
    out: dict[str, list[tuple[list[KernelCase], DeviceSpec]]] = {}
    for dev_id, recs in sorted(by_device.items()):
        device = get_device(dev_id)
        out.setdefault(device.architecture, []).append((kernel_cases(recs)[0], device))
    return out
