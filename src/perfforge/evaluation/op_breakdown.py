"""NeuSight's per-operator metric on perfforge's own whole-model runs (``perfforge profile --only breakdown``).

NeuSight reports, per op class, the error of the *summed* latency of all kernels of that class over one whole
model run, averaged over runs (sitar-lab/NeuSight ``scripts/asplos/summarize.py`` ``collect_perop_stat``;
``scripts/asplos/summary/perop.csv``). Here the measured side is the GPU time of each ATen op of a profiled run
(mapped to a class by :func:`op_class`), and the predicted side is perfforge's own graph of the same model and
shape, priced by an engine, summed by op kind. Both sides leave out what NeuSight's metric leaves out: copies
(``contiguous``), embedding lookups and reductions that are not one of the five classes are reported as
``OTHER`` and not scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from perfforge.engines.learned.model import CLASS_OF_KIND

# NeuSight's op classes, named as perfforge's learned model names them (BMM, FC, ELEMENTWISE, SOFTMAX, NORM)
SCORED = ("BMM", "FC", "SOFTMAX", "NORM", "ELEMENTWISE")
_ATEN_CLASS = {
    "aten::mm": "FC", "aten::addmm": "FC",
    "aten::bmm": "BMM", "aten::baddbmm": "BMM",
    "aten::_softmax": "SOFTMAX", "aten::_softmax_backward_data": "SOFTMAX",
    "aten::native_layer_norm": "NORM", "aten::native_layer_norm_backward": "NORM",
}
# pointwise ATen ops: NeuSight's VEC* classes (add, mul, div, pow, tanh, gelu, relu ... and their backward)
_POINTWISE = {"add", "add_", "sub", "mul", "mul_", "div", "div_", "pow", "tanh", "tanh_backward", "gelu",
              "gelu_backward", "relu", "clamp_min", "threshold_backward", "where", "masked_fill", "masked_fill_",
              "neg", "exp", "rsqrt", "sqrt", "silu", "silu_backward", "sigmoid", "sigmoid_backward"}
# perfforge graph op kinds -> the same classes (the learned model's table)
KIND_CLASS = {kind.value: c for kind, c in CLASS_OF_KIND.items()}


def op_class(aten: str) -> str:
    """The NeuSight class of a profiled ATen op; ``OTHER`` for copies, embeddings, reductions and the rest."""
    if aten in _ATEN_CLASS:
        return _ATEN_CLASS[aten]
    name = aten.removeprefix("aten::")
    return "ELEMENTWISE" if aten.startswith("aten::") and name in _POINTWISE else "OTHER"


def measured_sums(rec: dict[str, Any]) -> dict[str, float]:
    """Seconds of GPU time per class in one breakdown record (or the record's own ``class_sums``, as NeuSight's
    label traces come, ``perfforge.evaluation.neusight_traces``)."""
    if "class_sums" in rec:
        return dict(rec["class_sums"])
    sums: dict[str, float] = {}
    for o in rec["extra"]["ops"]:
        c = op_class(o["op"])
        sums[c] = sums.get(c, 0.0) + float(o["self_device_s"])
    return sums


def predicted_sums(result: Any, *, mask_class: str = "ELEMENTWISE") -> dict[str, float]:
    """Seconds per class of a Result's forward and backward ops (no optimizer step). Dropout is not scored
    (NeuSight drops it; the profiler's ``native_dropout`` is OTHER too). ``mask_class`` is the class of the
    attention-mask op (``*.attn.core.mask``) on the measured side: an additive mask is ELEMENTWISE (today's
    HF eager attention, ``aten::add``; NeuSight's OPT and BERT traces), a ``where`` is OTHER (NeuSight's GPT-2
    style traces, ``neusight_traces.mask_class``)."""
    sums: dict[str, float] = {}
    for r in result.breakdown:
        if r.phase == "optimizer" or r.stream != "compute":
            continue
        if ".dropout" in r.name:
            c = "OTHER"
        elif r.name.endswith(".core.mask"):
            c = mask_class
        else:
            c = KIND_CLASS.get(r.kind, "OTHER")
        sums[c] = sums.get(c, 0.0) + r.time_s
    return sums


def read_breakdown_records(root: str | Path) -> list[dict[str, Any]]:
    """Successful breakdown records of every ``measured/*/measurements.jsonl.gz`` under ``root``."""
    from perfforge.evaluation.measured import read_measurements

    out = []
    for path in sorted((Path(root) / "measured").glob("*/measurements.jsonl.gz")):
        out += [r for r in read_measurements(path) if r.get("group") == "breakdown"]
    return out


def predict_record(rec: dict[str, Any], backend: str, calibration: str | None = None) -> Any:
    """perfforge's prediction of one record's run: its own graph (eager, unfused attention), FP32; ``calibration``
    is an override file for the analytical engine's constants."""
    from perfforge.api import predict, resolve_workload
    from perfforge.evaluation.measured import device_id

    p = rec["params"]
    workload = resolve_workload(p["model"], mode=p["mode"], batch=p["batch"], seq=p["seq"], dtype="fp32",
                                attention_impl="unfused", dropout=p.get("dropout", 0.0), head=p.get("head"))
    return predict(workload, device_id(rec), mode="train" if p["mode"] == "train" else "inference",
                   optimizer="adamw", backend=backend, calibration=calibration)


def evaluate(records: Iterable[dict[str, Any]], *, backends: Iterable[str] = ("learned", "analytical"),
             gpus: Callable[[dict[str, Any]], str | None] | None = None,
             analytical_variants: dict[str, str] | None = None,
             learned_calibration: str | None = None) -> list[dict[str, Any]]:
    """One row per (record, backend): measured and predicted class sums, their APEs, and the whole step's.
    ``gpus(rec)`` names the record's GPU group, or None to skip it. ``analytical_variants`` adds the analytical
    engine under other calibrations ({row name: override file}); ``learned_calibration`` is the override file the
    learned backend's analytical member and fallback run with. Run inside ``using_model`` to score a particular
    learned model."""
    from perfforge.core.errors import PerfforgeError
    from perfforge.evaluation.measured import device_id

    rows = []
    for rec in records:
        group = gpus(rec) if gpus else rec["device"]["name"]
        if group is None:
            continue
        meas = measured_sums(rec)
        p = rec["params"]
        runs = [(b, b, learned_calibration if b == "learned" else None) for b in backends]
        runs += [(name, "analytical", path) for name, path in (analytical_variants or {}).items()]
        for name, backend, calibration in runs:
            row: dict[str, Any] = {"gpu": group, "hardware": device_id(rec), "model": p["model"], "mode": p["mode"],
                                   "batch": p["batch"], "seq": p["seq"], "label": p.get("neusight_label"),
                                   "run_id": rec.get("run_id"), "backend": name, "measured_s": rec["latency_s"],
                                   "measured": meas}
            try:
                r = predict_record(rec, backend, calibration)
            except PerfforgeError as exc:
                row["error"] = str(exc)
                rows.append(row)
                continue
            pred = predicted_sums(r, mask_class=rec.get("mask_class", "ELEMENTWISE"))
            row["predicted"] = pred
            row["predicted_s"] = r.step_time_s - sum(x.time_s for x in r.breakdown if x.phase == "optimizer")
            row["ape"] = {c: abs(pred.get(c, 0.0) / meas[c] - 1) * 100 for c in SCORED if meas.get(c, 0) > 0}
            row["e2e_ape"] = abs(row["predicted_s"] / rec["latency_s"] - 1) * 100
            if name == "learned":
                row["fallback_ops"] = r.extra.get("fallback_ops", {})
            rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per GPU group and backend: the mean APE of each class's summed time over runs, and of the whole step."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for gpu in sorted({r["gpu"] for r in rows}):
        for backend in sorted({r["backend"] for r in rows}):
            sel = [r for r in rows if r["gpu"] == gpu and r["backend"] == backend and "ape" in r]
            if not sel:
                continue
            d = {c: float(np.mean([r["ape"][c] for r in sel if c in r["ape"]]))
                 for c in SCORED if any(c in r["ape"] for r in sel)}
            d["e2e"] = float(np.mean([r["e2e_ape"] for r in sel]))
            d["runs"] = float(len(sel))
            out.setdefault(gpu, {})[backend] = d
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}%"


def render_section(rows: list[dict[str, Any]], neusight_ood: dict[str, float], *, model_note: str,
                   title: str = "NeuSight's per-op metric on whole-model runs",
                   neusight_id: dict[str, float] | None = None, gpu_verdicts: bool = True) -> list[str]:
    """Markdown lines: the per-op metric per GPU and backend (and their mean over GPUs) beside NeuSight's
    published numbers, then every run's class sums. ``gpu_verdicts``: also say, per GPU, whether the learned
    model's BMM/FC error is below NeuSight's OOD figure (off where some GPUs are in-sample)."""
    if not rows:
        return []
    summ = summary(rows)
    lines = [f"## {title}", "",
             "Runs: whole-model FP32 runs of NeuSight's benchmark configurations (BERT-Large, GPT2-Large, GPT3-XL as "
             "NeuSight ran it, GPT3-2.7B, OPT-1.3B; inference, and forward+backward training, at NeuSight's label "
             "batch and sequence sizes). perfforge's own runs (`perfforge profile --only breakdown`, HF transformers "
             "with eager attention) are measured as the GPU time of every ATen op of one profiled run, summed per "
             "class (`perfforge.evaluation.op_breakdown.op_class`); NeuSight's label traces as the sum of their "
             "nodes' latencies per class (`perfforge.evaluation.neusight_traces`). Copies, embeddings and "
             "reductions are not scored, as in NeuSight, nor is a mask applied with `where` or `masked_fill` "
             "(NeuSight's GPT-2-style traces); an added mask (its BERT and OPT traces, today's HF eager "
             "attention) is ELEMENTWISE, and the predicted mask op is classed as the run's own. "
             "Predicted: perfforge's own graph of the same model and "
             f"shape (eager attention), summed per op kind; {model_note}. The metric is NeuSight's: the APE of a "
             "class's summed time in one run, averaged over runs; 'step' is the APE of the run's measured whole "
             "latency against the predicted step without optimizer.", "",
             "| GPU | backend | runs | " + " | ".join(SCORED) + " | step |", "|---|---|---|" + "---|" * (len(SCORED) + 1)]
    for gpu, per in summ.items():
        for backend, d in per.items():
            lines.append(f"| {gpu} | {backend} | {int(d['runs'])} | "
                         + " | ".join(_pct(d.get(c)) for c in SCORED) + f" | {_pct(d['e2e'])} |")
    means: dict[str, dict[str, float]] = {}
    if len(summ) > 1:
        for backend in sorted({b for per in summ.values() for b in per}):
            per_gpu = [per[backend] for per in summ.values() if backend in per]
            means[backend] = {c: float(np.mean([d[c] for d in per_gpu if c in d]))
                              for c in (*SCORED, "e2e") if any(c in d for d in per_gpu)}
            lines.append(f"| mean over {len(per_gpu)} GPUs | {backend} | - | "
                         + " | ".join(_pct(means[backend].get(c)) for c in SCORED)
                         + f" | {_pct(means[backend].get('e2e'))} |")
    lines.append("| NeuSight, published OOD | NeuSight | - | " + " | ".join(_pct(neusight_ood.get(c)) for c in SCORED)
                 + " | - |")
    if neusight_id:
        lines.append("| NeuSight, published in-distribution | NeuSight | - | "
                     + " | ".join(_pct(neusight_id.get(c)) for c in SCORED) + " | - |")
    verdicts = []
    targets = {} if not gpu_verdicts else {**{gpu: per["learned"] for gpu, per in summ.items() if "learned" in per},
               **({f"the mean over {len(summ)} GPUs": means["learned"]} if "learned" in means else {})}
    for where, d in targets.items():
        for c in ("BMM", "FC"):
            if c in d and c in neusight_ood:
                word = "below" if d[c] < neusight_ood[c] else "not below"
                verdicts.append(f"{c} on {where}: {d[c]:.1f}%, {word} NeuSight's {neusight_ood[c]:.1f}%")
    if verdicts:
        lines += ["", "Learned model against the issue's BMM/FC targets, same metric: " + "; ".join(verdicts) + "."]
    traces = {f"{r['gpu']} {r['label']}": sum(r["measured"].values()) / r["measured_s"] for r in rows
              if r["backend"] == "learned" and str(r.get("run_id", "")).startswith("neusight:")}
    if traces:
        v = list(traces.values())
        slow = [f"{k} {x:.2f}x" for k, x in traces.items() if x > 1.15]
        lines += ["", f"NeuSight's per-node traces sum to {min(v):.2f}-{max(v):.2f}x their own whole-run label "
                      f"(median {float(np.median(v)):.2f}x, {len(v)} runs); above 1.15x, where nodes timed one at a "
                      "time ran slower than inside the whole run: " + (", ".join(slow) or "none") + "."]
    lines += ["", "Per run (measured -> predicted class sums in ms, learned backend):", "",
              "| GPU | run | measured step | predicted step | " + " | ".join(SCORED) + " |",
              "|---|---|---|---|" + "---|" * len(SCORED)]
    for r in rows:
        if r["backend"] != "learned" or "predicted" not in r:
            continue
        cells = []
        for c in SCORED:
            m, p = r["measured"].get(c, 0.0), r["predicted"].get(c, 0.0)
            cells.append(f"{m * 1e3:.1f} -> {p * 1e3:.1f}" if m > 0 else "-")
        lines.append(f"| {r['gpu']} | {r['label'] or r['model']} | {r['measured_s'] * 1e3:.1f} ms | "
                     f"{r['predicted_s'] * 1e3:.1f} ms | " + " | ".join(cells) + " |")
    return lines + [""]
