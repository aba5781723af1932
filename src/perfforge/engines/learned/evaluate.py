"""Leave-one-GPU-out validation, end-to-end NeuSight labels, and the report under data/evaluation/learned/.

Kernel rows: every GPU group is held out in turn; its kernels are predicted by the trees, the MLP and the
shipped per-class blend, all trained on the other groups only, and its interval is sized by the other
groups' out-of-fold errors. Baselines on the same rows: the bare datasheet roofline and the analytical
engine (shipped calibration).
End-to-end rows: NeuSight's whole-model labels predicted from perfforge's own graphs (eager attention, as
NeuSight's HuggingFace models ran) with the shipped model, which was trained on those GPUs' kernels
(in-distribution, as in NeuSight's own end-to-end table). NeuSight's ``gpt3_xl`` is built with the
dimensions NeuSight ran (the zoo's ``gpt3-xl-neusight``), not the zoo's 1.3B ``gpt3-xl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perfforge.engines.learned.dataset import (
    OP_CLASSES,
    conv_backward_groups,
    describe,
    load_records,
    samples_from_records,
    unresolved_devices,
)
from perfforge.engines.learned.e2e import e2e_rows, render_e2e
from perfforge.engines.learned.train import (
    INTERVAL_QUANTILES,
    MIN_ROWS,
    FoldResult,
    interval_offsets,
    leave_one_gpu_out,
    train_model,
)
from perfforge.evaluation.label_reproduction import render as render_reproduction
from perfforge.evaluation.label_reproduction import reproduction_rows

# NeuSight's out-of-distribution per-op errors (Lee et al., ASPLOS 2025): BMM 13.78%, FC 13.88% in
# scripts/asplos/summary/perop.csv of sitar-lab/NeuSight (see splits.NEUSIGHT_PEROP for the source, the other
# classes and what the metric is: the error of an op class's latency summed over a whole model run, averaged
# over runs with an OOD GPU or an OOD model). End-to-end mean error 8.9% as quoted in perfforge issue 6.
NEUSIGHT_OOD = {"BMM": 13.8, "FC": 13.9}
LEARNERS = {"trees": 0.0, "mlp": 1.0}   # MLP weight of each single learner in FoldResult.predict_s


def _ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred / meas - 1.0) * 100.0


def _pooled_offsets(err: np.ndarray, classes: np.ndarray, c: str) -> tuple[float, float]:
    """The first model's interval for comparison: plain 10th/90th percentiles of the pooled errors."""
    e = err[classes == c] if (classes == c).sum() >= MIN_ROWS else err
    return float(np.quantile(e, INTERVAL_QUANTILES[0])), float(np.quantile(e, INTERVAL_QUANTILES[1]))


def kernel_rows(folds: dict[str, FoldResult]) -> list[dict[str, Any]]:
    """One row per (held-out GPU group, op class): trees, MLP and shipped-blend errors, interval coverage."""
    rows = []
    for fam, fold in folds.items():
        s = fold.samples
        shipped = fold.pred_s
        single = {name: fold.predict_s(w) for name, w in LEARNERS.items()}
        learned = fold.learned_s
        log_err = np.log(s.latency_s / shipped)
        for g in sorted(np.unique(s.group)):
            gm = (s.group == g) & np.isfinite(shipped)
            if not gm.any():
                continue
            offsets = interval_offsets(fold, exclude_group=g)
            others = np.isfinite(shipped) & (s.group != g)
            for c in sorted(np.unique(s.op_class[gm])):
                m = gm & (s.op_class == c)
                lo, hi = offsets.get(str(c), offsets["*"])
                plo, phi = _pooled_offsets(log_err[others], s.op_class[others], str(c))
                ape = _ape(shipped[m], s.latency_s[m])
                rows.append({
                    "family": fam, "gpu": str(g), "op_class": str(c), "n": int(m.sum()),
                    "sources": ",".join(sorted(set(s.source[m]))),
                    "blend_mlp_weight": float(fold.blend.get(str(c), fold.blend.get("*", 0.0))),
                    "blend_analytical_weight": float(fold.analytical_weight.get(
                        str(c), fold.analytical_weight.get("*", 0.0))),
                    "mape": float(ape.mean()), "median_ape": float(np.median(ape)),
                    "mape_learned": float(_ape(learned[m], s.latency_s[m]).mean()),
                    "mape_trees": float(_ape(single["trees"][m], s.latency_s[m]).mean()),
                    "mape_mlp": float(_ape(single["mlp"][m], s.latency_s[m]).mean()),
                    "median_ape_trees": float(np.median(_ape(single["trees"][m], s.latency_s[m]))),
                    "median_ape_mlp": float(np.median(_ape(single["mlp"][m], s.latency_s[m]))),
                    "coverage": float(np.mean((log_err[m] >= lo) & (log_err[m] <= hi))),
                    "coverage_pooled": float(np.mean((log_err[m] >= plo) & (log_err[m] <= phi))),
                    "interval": [lo, hi],
                    "bias": float(np.median(-log_err[m])),
                    # diagnostic, not a prediction: the shipped model rescaled by this GPU's own median error
                    "mape_oracle_scale": float(_ape(shipped[m] * np.exp(np.median(log_err[m])),
                                                    s.latency_s[m]).mean()),
                    "roofline_mape": float(_ape(s.bound_s[m], s.latency_s[m]).mean()),
                    "analytical_mape": float(_ape(s.analytical_s[m], s.latency_s[m]).mean()),
                    "analytical_priors_mape": float(_ape(s.analytical_priors_s[m], s.latency_s[m]).mean()),
                })
    return rows


def dtype_rows(folds: dict[str, FoldResult]) -> list[dict[str, Any]]:
    """The shipped model's held-out error per (GPU group, op class, compute dtype), for the (GPU, class) pairs
    measured in more than one dtype (FP32 CUDA-core kernels and FP16/BF16/TF32 tensor-core kernels differ)."""
    rows = []
    for fam, fold in folds.items():
        s, shipped = fold.samples, fold.pred_s
        ok = np.isfinite(shipped)
        for g in sorted(np.unique(s.group[ok])):
            for c in sorted(np.unique(s.op_class[ok & (s.group == g)])):
                pair = ok & (s.group == g) & (s.op_class == c)
                dtypes = sorted(np.unique(s.dtype[pair]))
                if len(dtypes) < 2:
                    continue
                for dt in dtypes:
                    m = pair & (s.dtype == dt)
                    if m.sum() < MIN_ROWS:
                        continue
                    ape = _ape(shipped[m], s.latency_s[m])
                    rows.append({"family": fam, "gpu": str(g), "op_class": str(c), "dtype": str(dt), "n": int(m.sum()),
                                 "sources": ",".join(sorted(set(s.source[m]))), "mape": float(ape.mean()),
                                 "median_ape": float(np.median(ape)),
                                 "bias": float(np.median(np.log(shipped[m] / s.latency_s[m]))),
                                 "analytical_priors_mape": float(_ape(s.analytical_priors_s[m], s.latency_s[m]).mean())})
    return rows


def run(root: str | Path, *, scale: float = 1.0, progress: Callable[[str], None] | None = None,
        with_e2e: bool = True, extra: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    """Everything ``perfforge learn train`` needs: samples, folds, the trained model and the report rows.
    ``extra``: more measurement files or run folders (``dataset.load_records``)."""
    t0 = time.perf_counter()
    root = Path(root)
    records = load_records(root, scale=scale, extra=extra)
    samples = samples_from_records(records)
    if progress:
        progress(f"{sum(len(s) for s in samples.values())} kernel samples from {len(records)} records "
                 f"({time.perf_counter() - t0:.1f}s)")
        for name, n in unresolved_devices(records).items():
            progress(f"not trained on: {n} kernel records of '{name}', which no catalog device lists in its "
                     "cuda_names (describe it in a device YAML on PERFFORGE_CATALOG)")
    folds = {fam: leave_one_gpu_out(s, progress=progress) for fam, s in samples.items()}
    model = train_model(samples, folds, conv_backward_groups=conv_backward_groups(records))
    out = {"samples": samples, "folds": folds, "model": model, "kernel_rows": kernel_rows(folds),
           "dtype_rows": dtype_rows(folds),
           "data": describe(samples), "train_s": time.perf_counter() - t0}
    if with_e2e:
        from perfforge.engines.learned.perop import held_out_models, logo_perop_rows

        held = held_out_models(model, folds)
        out["e2e_rows"] = e2e_rows(model, root, held)
        out["perop_rows"] = logo_perop_rows(held, root)
        out["label_reproduction"] = reproduction_rows(root)
    return out


# ---- report ---------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}%"


SUMMARY_KEYS = ("mape", "median_ape", "mape_trees", "median_ape_trees", "mape_mlp", "median_ape_mlp", "coverage",
                "coverage_pooled", "roofline_mape", "analytical_mape", "analytical_priors_mape", "blend_mlp_weight",
                "blend_analytical_weight", "mape_learned", "mape_oracle_scale")


def summary_by_class(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean over held-out GPUs of each class's metrics (each GPU with >= MIN_ROWS kernels counts once)."""
    out: dict[str, dict[str, float]] = {}
    for c in OP_CLASSES:
        sel = [r for r in rows if r["op_class"] == c and r["n"] >= MIN_ROWS]
        if sel:
            out[c] = {k: float(np.mean([r[k] for r in sel])) for k in SUMMARY_KEYS}
            out[c]["gpus"] = len(sel)
    return out


def _blend_name(w: float, a: float = 0.0) -> str:
    name = {0.0: "trees", 1.0: "MLP"}.get(w, f"{1 - w:.1f} trees + {w:.1f} MLP")
    return name if a == 0.0 else f"({name})^{1 - a:g} x analytical^{a:g}"


def render_report(result: dict[str, Any], *, command: str) -> str:
    rows = result["kernel_rows"]
    summary = summary_by_class(rows)
    lines = ["# Learned kernel model: leave-one-GPU-out and end-to-end", "",
             f"Generated by `{command}` (perfforge.engines.learned). Training data rows per family, source and GPU "
             "group are in `kernel_model.json` beside the shipped model.", "",
             "Each GPU group (chip; all A100 boards are one group) is held out in turn: its kernels are predicted by "
             "learners trained on the other groups only. Two learners predict log(latency / datasheet roofline) from "
             "the same tile/wave and GPU features: gradient-boosted trees, and a NeuSight-style MLP (2 x 64 ReLU, "
             "clipped z-score inputs; the attained fraction of the roofline is exp(-output)). The shipped model uses, "
             "per op class, the trees, the MLP or their log-space average, whichever had the lowest mean held-out "
             "MAPE, then blends that with the analytical engine's time geometrically, learned^(1-a) x "
             "analytical^a, with a in {0, 0.25, 0.5} chosen the same way (each choice made on these same "
             "out-of-fold rows: three candidates per class, a small optimism). On a held-out GPU the analytical "
             "member runs on the calibration's priors alone (no constant fitted on any GPU's kernels): 'learned "
             "only' is the learners' blend without it, 'analytical, priors' that member alone.", "",
             "The 80% interval for a held-out GPU is sized by the other GPUs' out-of-fold errors: every GPU weighs "
             "the same, and the 10th-90th percentile band is widened around its median by the factor that covers "
             "80% of each GPU's errors in a leave-one-GPU-out over those errors themselves (errors of one GPU are "
             "correlated: a card that runs below its datasheet does so on every kernel). 'pooled' is the first "
             "model's interval (plain percentiles of the pooled errors), for comparison.", "",
             "APE = |pred/meas - 1|; bias = median ln(pred/meas) (negative: too fast). Baselines on the same rows: "
             "the bare datasheet roofline, and the analytical engine with its shipped calibration (the Hopper block "
             "was fitted on H100 kernels, so its H100 rows are in-sample; the pre-Hopper blocks' FP32 GEMM scale and "
             "3x3-conv speed-up were fitted on NeuSight's FP32 kernels, which overlap these rows). Means are over "
             "held-out GPUs with at "
             "least 20 kernels of the class.",
             "", "## Summary by op class (mean over held-out GPUs)", "",
             "| op class | GPUs | trees MAPE | MLP MAPE | learned only MAPE | shipped | shipped MAPE | "
             "shipped median APE | coverage (80%) | coverage, pooled interval | roofline MAPE | analytical, priors MAPE | "
             "analytical MAPE | shipped, GPU's own median error removed | NeuSight OOD |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c, v in summary.items():
        lines.append(f"| {c} | {v['gpus']:.0f} | {_pct(v['mape_trees'])} | {_pct(v['mape_mlp'])} | "
                     f"{_pct(v['mape_learned'])} | "
                     f"{_blend_name(v['blend_mlp_weight'], v['blend_analytical_weight'])} | {_pct(v['mape'])} | "
                     f"{_pct(v['median_ape'])} | {_pct(100 * v['coverage'])} | {_pct(100 * v['coverage_pooled'])} | "
                     f"{_pct(v['roofline_mape'])} | {_pct(v['analytical_priors_mape'])} | "
                     f"{_pct(v['analytical_mape'])} | {_pct(v['mape_oracle_scale'])} | "
                     f"{_pct(NEUSIGHT_OOD.get(c))} |")
    missed = [f"{c} {v['mape']:.1f}% vs {NEUSIGHT_OOD[c]}%" for c, v in summary.items()
              if c in NEUSIGHT_OOD and v["mape"] >= NEUSIGHT_OOD[c]]
    if missed:
        lines += ["", f"Target missed: leave-one-GPU-out MAPE is not below NeuSight's out-of-distribution error for "
                      f"{'; '.join(missed)}. NeuSight's figure is another metric on another split: trained on P4, "
                      f"T4, P100, V100 and A100-40GB, it is the error of an op class's latency summed over a whole "
                      f"model run, averaged over runs on H100/L4/A100-80GB or of GPT3-2.7B/OPT-1.3B/GPT3-XL on any "
                      f"GPU; here every kernel's error counts, and every GPU, including the power-limited T4 and "
                      f"P4, is held out once. NeuSight's GPU split on our kernels: `split-neusight.md` "
                      f"(`perfforge learn evaluate --split neusight`). NeuSight's own metric, leave-one-GPU-out, "
                      f"is in the last section."]
        oracle = [f"{c} {v['mape_oracle_scale']:.1f}%" for c, v in summary.items() if c in NEUSIGHT_OOD]
        lines += ["", f"How much of the miss is one scale per GPU: with each held-out GPU's own median error per "
                      f"class removed (an oracle that no prediction has: it reads the held-out measurements), the "
                      f"shipped model would still be {'; '.join(oracle)} off (column 'GPU's own median error "
                      f"removed'). What a per-GPU scale removes is how far below its datasheet a GPU runs (L4's "
                      f"linear layers: about a third of its FP32 peak), which no datasheet feature tried predicts "
                      f"(`docs/learned.md`). What it leaves is the shape pattern of each chip (which kernel and tile "
                      f"its libraries pick for a shape), which does not carry over from other chips: `few-shot.md`, "
                      f"'Does one chip's shape pattern carry over to another?'."]
    lines += ["", "## Per held-out GPU and op class", "",
              "| held-out GPU | op class | kernels | sources | trees MAPE | MLP MAPE | learned only MAPE | shipped MAPE | "
              "shipped median APE | coverage | coverage, pooled | bias | roofline MAPE | analytical, priors MAPE | "
              "analytical MAPE | shipped, own median error removed |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["gpu"], OP_CLASSES.index(r["op_class"]))):
        lines.append(f"| {r['gpu']} | {r['op_class']} | {r['n']} | {r['sources']} | {_pct(r['mape_trees'])} | "
                     f"{_pct(r['mape_mlp'])} | {_pct(r['mape_learned'])} | {_pct(r['mape'])} | "
                     f"{_pct(r['median_ape'])} | {_pct(100 * r['coverage'])} | {_pct(100 * r['coverage_pooled'])} | "
                     f"{r['bias']:+.3f} | {_pct(r['roofline_mape'])} | {_pct(r['analytical_priors_mape'])} | "
                     f"{_pct(r['analytical_mape'])} | {_pct(r['mape_oracle_scale'])} |")
    if result.get("dtype_rows"):
        lines += ["", "## Per held-out GPU, op class and compute dtype", "",
                  "The (GPU, op class) pairs above that were measured in more than one dtype, split by dtype: FP32 runs "
                  "on CUDA cores, FP16/BF16 (and TF32) on tensor cores. Same held-out predictions as above.", "",
                  "| held-out GPU | op class | dtype | kernels | sources | shipped MAPE | shipped median APE | bias | "
                  "analytical, priors MAPE |", "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(result["dtype_rows"], key=lambda r: (r["gpu"], OP_CLASSES.index(r["op_class"]), r["dtype"])):
            lines.append(f"| {r['gpu']} | {r['op_class']} | {r['dtype']} | {r['n']} | {r['sources']} | "
                         f"{_pct(r['mape'])} | {_pct(r['median_ape'])} | {r['bias']:+.3f} | "
                         f"{_pct(r['analytical_priors_mape'])} |")
    lines += render_e2e(result.get("e2e_rows") or [])
    lines += render_reproduction(result.get("label_reproduction") or [])
    if result.get("perop_rows"):
        from perfforge.engines.learned.splits import NEUSIGHT_PEROP
        from perfforge.evaluation.op_breakdown import render_section

        lines += [""] + render_section(
            result["perop_rows"], NEUSIGHT_PEROP["ood"], title="NeuSight's per-op metric, leave-one-GPU-out",
            model_note="'learned' is, for each GPU, the model whose learners were trained without that GPU "
                       "(leave-one-GPU-out folds, shipped blends and intervals; its analytical member and fallback "
                       "on the calibration's priors), 'analytical' the analytical engine as shipped. "
                       "Runs: NeuSight's per-node label traces on its five training GPUs and its OOD GPUs H100, L4 and "
                       "A100 80GB PCIe (each node timed alone by NeuSight, so a trace's sum can exceed the whole-run "
                       "label) and perfforge's own runs on H100 and H200",
            neusight_id=NEUSIGHT_PEROP["id"])[:-1]
    lines.append("")
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], folder: str | Path, *, command: str) -> None:
    from perfforge.core.files import write_atomic

    folder = Path(folder)
    write_atomic(folder / "report.md", render_report(result, command=command))
    payload = {"command": command, "kernel_rows": result["kernel_rows"], "dtype_rows": result.get("dtype_rows", []),
               "e2e_rows": result.get("e2e_rows", []),
               "perop_rows": result.get("perop_rows", []), "label_reproduction": result.get("label_reproduction", []),
               "summary": summary_by_class(result["kernel_rows"]), "data": result["data"]}
    write_atomic(folder / "results.json", json.dumps(payload, indent=2, default=str) + "\n")
