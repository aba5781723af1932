"""Leave-one-GPU-out validation, end-to-end NeuSight labels, and the report under data/evaluation/learned/.

Kernel rows: every GPU group is held out in turn; its kernels are predicted by a model trained on the
other groups only, and its interval is sized by the other groups' out-of-fold errors. Baselines on the
same rows: the bare datasheet roofline and the analytical engine (shipped calibration).
End-to-end rows: NeuSight's whole-model labels predicted from perfforge's own graphs (eager attention, as
NeuSight's HuggingFace models ran) with the shipped model, which was trained on those GPUs' kernels
(in-distribution, as in NeuSight's own end-to-end table).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.engines.learned.dataset import OP_CLASSES, describe, load_records, samples_from_records
from perfforge.engines.learned.model import LearnedKernelModel
from perfforge.engines.learned.train import FoldResult, interval_offsets, leave_one_gpu_out, train_model

# NeuSight's out-of-distribution kernel errors (Lee et al., "NeuSight", ASPLOS 2025, abstract/Table: BMM 13.8%,
# FC 13.9%) and end-to-end mean error 8.9% (as quoted in perfforge issue 6).
NEUSIGHT_OOD = {"BMM": 13.8, "FC": 13.9}
NEUSIGHT_E2E = 8.9
# NeuSight's "gpt3_xl" is not the paper's GPT-3 XL: its config (scripts/asplos/data/DLmodel_configs/gpt3_xl.json)
# has n_embd 3072, n_head 24, n_layer 24. Rows for it are also predicted with those dimensions.
NEUSIGHT_GPT3_XL = {"layers": 24, "hidden": 3072, "heads": 24}


def _ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred / meas - 1.0) * 100.0


def kernel_rows(folds: dict[str, FoldResult]) -> list[dict[str, Any]]:
    """One row per (held-out GPU group, op class), plus an 'all' class per group."""
    rows = []
    for fam, fold in folds.items():
        s = fold.samples
        for g in sorted(np.unique(s.group)):
            gm = (s.group == g) & np.isfinite(fold.pred_s)
            if not gm.any():
                continue
            offsets = interval_offsets(fold, exclude_group=g)
            for c in sorted(np.unique(s.op_class[gm])):
                m = gm & (s.op_class == c)
                lo, hi = offsets.get(str(c), offsets["*"])
                inside = (s.latency_s[m] >= fold.pred_s[m] * np.exp(lo)) & (s.latency_s[m] <= fold.pred_s[m] * np.exp(hi))
                ape = _ape(fold.pred_s[m], s.latency_s[m])
                rows.append({
                    "family": fam, "gpu": str(g), "op_class": str(c), "n": int(m.sum()),
                    "sources": ",".join(sorted(set(s.source[m]))), "mape": float(ape.mean()),
                    "median_ape": float(np.median(ape)), "coverage": float(inside.mean()),
                    "bias": float(np.median(np.log(fold.pred_s[m] / s.latency_s[m]))),
                    "roofline_mape": float(_ape(s.bound_s[m], s.latency_s[m]).mean()),
                    "analytical_mape": float(_ape(s.analytical_s[m], s.latency_s[m]).mean()),
                })
    return rows


def e2e_rows(model: LearnedKernelModel, root: Path) -> list[dict[str, Any]]:
    """NeuSight's end-to-end labels predicted with both backends (learned and analytical)."""
    from perfforge.api import predict, resolve_workload
    from perfforge.core.errors import PerfforgeError
    from perfforge.engines.learned.backend import using_model
    from perfforge.evaluation.measured import DEVICE_IDS
    from perfforge.evaluation.neusight import read_labels
    from perfforge.workload.models.transformer import TransformerConfig, build_transformer

    rows = []
    for rec in read_labels(root / "neusight"):
        p = rec["params"]
        hw = DEVICE_IDS.get(rec["device"]["name"])
        variants: list[tuple[str, Any]] = [(p["model"], p["model"])]
        if p["neusight_model"] == "gpt3_xl":
            cfg = TransformerConfig(name="gpt3-xl (NeuSight dims)", vocab=50257, max_positions=2048,
                                    ffn=4 * NEUSIGHT_GPT3_XL["hidden"], tied_embeddings=True,
                                    source="NeuSight scripts/asplos/data/DLmodel_configs/gpt3_xl.json",
                                    **NEUSIGHT_GPT3_XL)
            variants.append(("gpt3-xl (NeuSight dims: d_model 3072)", cfg))
        for label, spec in variants:
            row = {"gpu": hw, "label": Path(rec["key"]).name, "model": label, "mode": p["mode"], "batch": p["batch"],
                   "seq": p["seq"], "measured_s": rec["latency_s"]}
            for backend in ("learned", "analytical"):
                try:
                    if isinstance(spec, str):
                        workload = resolve_workload(spec, mode=p["mode"], batch=p["batch"], seq=p["seq"],
                                                    dtype="fp32", attention_impl="unfused")
                    else:
                        workload = build_transformer(spec, batch=p["batch"], seq=p["seq"], dtype=DType.FP32,
                                                     attention_impl="unfused")
                    with using_model(model):
                        r = predict(workload, hw, mode="train" if p["mode"] == "train" else "inference",
                                    optimizer="adamw", backend=backend)
                    t = r.step_time_s
                    if p.get("exclude_optimizer"):
                        t -= sum(x.time_s for x in r.breakdown if x.phase == "optimizer")
                    row[f"{backend}_s"] = t
                    if backend == "learned":
                        row["fallback_ops"] = r.extra.get("fallback_ops", {})
                        row["low_s"] = r.extra.get("kernel_time_low_s")
                        row["high_s"] = r.extra.get("kernel_time_high_s")
                except PerfforgeError as exc:
                    row[f"{backend}_s"] = None
                    row[f"{backend}_error"] = str(exc)
            rows.append(row)
    return rows


def run(root: str | Path, *, scale: float = 1.0, progress: Callable[[str], None] | None = None,
        with_e2e: bool = True) -> dict[str, Any]:
    """Everything ``perfforge learn train`` needs: samples, folds, the trained model and the report rows."""
    t0 = time.perf_counter()
    root = Path(root)
    records = load_records(root, scale=scale)
    samples = samples_from_records(records)
    if progress:
        progress(f"{sum(len(s) for s in samples.values())} kernel samples from {len(records)} records "
                 f"({time.perf_counter() - t0:.1f}s)")
    folds = {fam: leave_one_gpu_out(s, progress=progress) for fam, s in samples.items()}
    model = train_model(samples, folds)
    out = {"samples": samples, "folds": folds, "model": model, "kernel_rows": kernel_rows(folds),
           "data": describe(samples), "train_s": time.perf_counter() - t0}
    if with_e2e:
        out["e2e_rows"] = e2e_rows(model, root)
    return out


# ---- report ---------------------------------------------------------------------------------------
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1e3 * x:.1f} ms"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}%"


def summary_by_class(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over held-out GPUs of each class's MAPE (each GPU counts once)."""
    out: dict[str, dict[str, float]] = {}
    for c in OP_CLASSES:
        sel = [r for r in rows if r["op_class"] == c and r["n"] >= 20]
        if sel:
            out[c] = {k: float(np.mean([r[k] for r in sel])) for k in
                      ("mape", "median_ape", "coverage", "roofline_mape", "analytical_mape")}
            out[c]["gpus"] = len(sel)
    return out


def render_report(result: dict[str, Any], *, command: str) -> str:
    rows = result["kernel_rows"]
    lines = ["# Learned kernel model: leave-one-GPU-out and end-to-end", "",
             f"Generated by `{command}` (perfforge.engines.learned). Training data rows per family, source and GPU "
             "group are in `kernel_model.json` beside the shipped model.", "",
             "Each GPU group (chip; all A100 boards are one group) is held out in turn: its kernels are predicted by "
             "trees trained on the other groups only, and the 80% interval is sized by the other groups' "
             "out-of-fold errors. APE = |pred/meas - 1|; bias = median ln(pred/meas) (negative: too fast). "
             "Baselines on the same rows: the bare datasheet roofline, and the analytical engine with its "
             "shipped calibration (the Hopper block was fitted on H100 kernels, so its H100 rows are in-sample).",
             "", "## Summary by op class (mean over held-out GPUs)", "",
             "| op class | GPUs | learned MAPE | learned median APE | 80% interval coverage | roofline MAPE | analytical MAPE | NeuSight OOD |",
             "|---|---|---|---|---|---|---|---|"]
    for c, v in summary_by_class(rows).items():
        lines.append(f"| {c} | {v['gpus']:.0f} | {_pct(v['mape'])} | {_pct(v['median_ape'])} | {_pct(100 * v['coverage'])} | "
                     f"{_pct(v['roofline_mape'])} | {_pct(v['analytical_mape'])} | {_pct(NEUSIGHT_OOD.get(c))} |")
    lines += ["", "## Per held-out GPU and op class", "",
              "| held-out GPU | op class | kernels | sources | MAPE | median APE | coverage | bias | roofline MAPE | analytical MAPE |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["gpu"], OP_CLASSES.index(r["op_class"]))):
        lines.append(f"| {r['gpu']} | {r['op_class']} | {r['n']} | {r['sources']} | {_pct(r['mape'])} | "
                     f"{_pct(r['median_ape'])} | {_pct(100 * r['coverage'])} | {r['bias']:+.3f} | "
                     f"{_pct(r['roofline_mape'])} | {_pct(r['analytical_mape'])} |")
    e2e = result.get("e2e_rows") or []
    if e2e:
        lines += ["", "## End to end: NeuSight's labels (FP32, in-distribution GPUs)", "",
                  "Whole-model forward (inference) or forward+backward (training, no optimizer step) from perfforge's "
                  "zoo graphs with eager attention, predicted with the shipped learned model (trained on these GPUs' "
                  "kernels) and with the analytical backend. The interval is the sum of per-kernel 80% intervals.",
                  "", "| GPU | label | model | measured | learned | error | interval | analytical | error | fallback ops |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in e2e:
            le = None if r.get("learned_s") is None else 100 * (r["learned_s"] / r["measured_s"] - 1)
            ae = None if r.get("analytical_s") is None else 100 * (r["analytical_s"] / r["measured_s"] - 1)
            interval = (f"{1e3 * r['low_s']:.0f}-{1e3 * r['high_s']:.0f} ms" if r.get("low_s") else "-")
            fb = ", ".join(f"{k} {v}" for k, v in (r.get("fallback_ops") or {}).items()) or "-"
            lines.append(f"| {r['gpu']} | {r['label']} | {r['model']} | {_ms(r['measured_s'])} | "
                         f"{_ms(r.get('learned_s'))} | {_signed(le)} | {interval} | {_ms(r.get('analytical_s'))} | "
                         f"{_signed(ae)} | {fb} |")
        lines += ["", *e2e_summary_lines(e2e)]
    lines.append("")
    return "\n".join(lines)


def e2e_summary_lines(e2e: list[dict[str, Any]]) -> list[str]:
    out = []
    for title, sel in (("zoo graphs (gpt3-xl = the paper's 1.3B)", [r for r in e2e if "NeuSight dims" not in r["model"]]),
                       ("with NeuSight's gpt3_xl dimensions instead",
                        [r for r in e2e if r["model"] != "gpt3-xl"])):
        for backend in ("learned", "analytical"):
            errs = [abs(r[f"{backend}_s"] / r["measured_s"] - 1) * 100 for r in sel if r.get(f"{backend}_s")]
            inside = [r["low_s"] <= r["measured_s"] <= r["high_s"] for r in sel if backend == "learned" and r.get("low_s")]
            if errs:
                cov = f", measured inside the interval in {sum(inside)}/{len(inside)}" if inside else ""
                out.append(f"- {title}, {backend}: {len(errs)} labels, mean APE {np.mean(errs):.1f}%, "
                           f"median {np.median(errs):.1f}% (NeuSight reports {NEUSIGHT_E2E}%){cov}")
    return out


def write_outputs(result: dict[str, Any], folder: str | Path, *, command: str) -> None:
    from perfforge.core.files import write_atomic

    folder = Path(folder)
    write_atomic(folder / "report.md", render_report(result, command=command))
    payload = {"command": command, "kernel_rows": result["kernel_rows"], "e2e_rows": result.get("e2e_rows", []),
               "summary": summary_by_class(result["kernel_rows"]), "data": result["data"]}
    write_atomic(folder / "results.json", json.dumps(payload, indent=2, default=str) + "\n")
