"""perfforge's serving simulator beside Vidur 0.0.26 on identical requests and operator times.

    python benchmarks/compare_vidur.py [--vidur-python PATH] [--requests N] [--out data/evaluation/serving]

For each scheduler (vllm, sarathi) and load (low, near capacity, overloaded, and an overloaded run under
memory pressure) it simulates the same requests three ways: Vidur (through perfforge's adapter, offline, on
perfforge's operator table), perfforge as shipped, and perfforge with Vidur's lookup quantisation emulated
(``vidur_lookups``), which separates differences in simulation from differences in how each looks up times.
Percentiles are computed from the per-request arrays with one function (numpy's linear interpolation) for
both tools. CPU time per simulated request is Vidur's ``Simulator.run`` against perfforge's ``simulate``
(the whole call: set-up, simulation, metrics; median of 3 after one warm-up run that compiles the compiled core
or loads it from numba's cache), both measured with ``time.process_time`` on this machine, for perfforge's
compiled core (the default) and its Python reference simulator. Writes ``vidur_comparison.json`` and
``vidur_comparison.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from perfforge.adapters.vidur import run_vidur, vidur_composition
from perfforge.core.errors import ConfigError
from perfforge.core.files import write_atomic
from perfforge.serving.batch_time import VIDUR_LOOKUPS
from perfforge.serving.run import operator_table, request_set, simulate
from perfforge.serving.spec import make_spec

BASE = dict(model="llama-2-7b", hardware="a100-sxm4-80gb", arrival="poisson", seed=42)
LOADS = {
    "low": dict(qps=2.0, length="fixed", prefill=512, decode=128),
    "near": dict(qps=9.0, length="fixed", prefill=512, decode=128),
    "over": dict(qps=16.0, length="fixed", prefill=512, decode=128),
    "over-memory": dict(qps=6.0, length="uniform", min_tokens=1024, max_tokens=4096, prefill_to_decode_ratio=1.0,
                        memory_fraction=0.3),
}
METRICS = ("ttft", "tpot", "e2e")


def _ours(report) -> dict[str, np.ndarray]:  # noqa: ANN001
    s = report.output.state
    return {"ttft": s.first_token_at - s.arrival, "e2e": s.completed_at - s.arrival,
            # Vidur's TPOT: (completion - first token) / output tokens
            "tpot": (s.completed_at - s.first_token_at) / s.orig_decode, "restarts": s.restarts.astype(float)}


def _pcts(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    return {f"{m}_p{p}_s": float(np.nanpercentile(arrays[m], p)) for m in METRICS for p in (50, 99)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vidur-python", default=None)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--out", default="data/evaluation/serving")
    ap.add_argument("--reference-out", default="data/ground_truth/vidur-sim/reference_outputs.json")
    args = ap.parse_args()
    rows = []
    for scheduler in ("vllm", "sarathi"):
        for load, extra in LOADS.items():
            spec_args = {**BASE, **extra, "scheduler": scheduler, "requests": args.requests}
            spec = make_spec(**spec_args)
            table = vidur_composition(operator_table(spec))
            reqs = request_set(spec)
            cpu, cpu_py = [], []
            simulate(spec, reqs, table)   # warm-up: compiles the compiled core or loads it from the cache
            for _ in range(3):
                t0 = time.process_time()
                ours = simulate(spec, reqs, table)
                cpu.append(time.process_time() - t0)
            py_spec = spec.model_copy(update={"core": "python"})
            for _ in range(3):
                t0 = time.process_time()
                simulate(py_spec, reqs, table)
                cpu_py.append(time.process_time() - t0)
            aligned = simulate(spec, reqs, table, vidur_lookups=True)
            # each Vidur lookup behaviour alone: how much of the as-shipped difference it explains
            single = {q: _pcts(_ours(simulate(spec, reqs, table, vidur_lookups=(q,)))) for q in VIDUR_LOOKUPS}
            try:
                vid = run_vidur(spec, reqs, table, ours.kv.num_blocks, python=args.vidur_python)
            except ConfigError as exc:
                rows.append({"scheduler": scheduler, "load": load, "qps": spec.qps, "requests": len(reqs),
                             "vidur_error": str(exc), "perfforge": _pcts(_ours(ours)),
                             "preemptions": {"perfforge": int(ours.summary["preemptions"])},
                             "cpu_s_per_request": {"perfforge": statistics.median(cpu) / len(reqs),
                                                   "perfforge_python": statistics.median(cpu_py) / len(reqs)}})
                print(scheduler, load, "Vidur failed:", exc, flush=True)
                continue
            row = {"scheduler": scheduler, "load": load, "qps": spec.qps, "requests": len(reqs), "spec": spec_args,
                   "vidur": _pcts(vid), "perfforge": _pcts(_ours(ours)), "perfforge_vidur_lookups": _pcts(_ours(aligned)),
                   "preemptions": {"vidur": int(np.nansum(vid["restarts"])),
                                   "perfforge": int(ours.summary["preemptions"]),
                                   "perfforge_vidur_lookups": int(aligned.summary["preemptions"])},
                   "cpu_s_per_request": {"vidur": vid["simulation_cpu_s"] / len(reqs),
                                         "vidur_setup_s": vid["setup_cpu_s"],
                                         "perfforge": statistics.median(cpu) / len(reqs),
                                         "perfforge_python": statistics.median(cpu_py) / len(reqs)},
                   "simulation_core": ours.summary["simulation_core"]}
            row["cpu_ratio"] = row["cpu_s_per_request"]["vidur"] / row["cpu_s_per_request"]["perfforge"]
            row["cpu_ratio_python"] = row["cpu_s_per_request"]["vidur"] / row["cpu_s_per_request"]["perfforge_python"]
            for variant in ("perfforge", "perfforge_vidur_lookups"):
                row[f"{variant}_diff"] = {k: row[variant][k] / row["vidur"][k] - 1 for k in row["vidur"]}
            row["single_lookup_diff"] = {q: {k: v[k] / row["vidur"][k] - 1 for k in v} for q, v in single.items()}
            rows.append(row)
            print(scheduler, load, {k: f"{v:+.2%}" for k, v in row["perfforge_vidur_lookups_diff"].items()},
                  f"cpu ratio {row['cpu_ratio']:.0f}x", flush=True)
    out = Path(args.out)
    meta = {"machine": platform.platform(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/compare_vidur.py"}
    write_atomic(out / "vidur_comparison.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
    write_atomic(out / "vidur_comparison.md", _markdown(rows, meta))
    # the real tool's outputs, as ground truth the `serving` evaluation suite re-runs perfforge against
    ref = {"meta": {**meta, "tool": "vidur 0.0.26 (PyPI), run offline through perfforge.adapters.vidur on "
                                    "perfforge's analytical operator table (Vidur's batch-time composition)",
                    "percentiles": "numpy linear interpolation over per-request values",
                    "tpot": "Vidur's definition: (completion - first token) / output tokens"},
           "cases": [{"id": f"{r['scheduler']}-{r['load']}", "spec": r["spec"], "vidur": r["vidur"]}
                     for r in rows if "vidur" in r]}
    write_atomic(Path(args.reference_out), json.dumps(ref, indent=2))


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# perfforge vs Vidur 0.0.26 on identical requests and operator times", "",
             f"Generated by `{meta['command']}` on {meta['date']} ({meta['machine']}, Python {meta['python']}).",
             "Llama-2-7B on one A100-SXM4-80GB, FP16, perfforge's analytical operator table handed to Vidur as its "
             "prediction tables; requests are identical (Poisson, seed 42). Differences are perfforge / Vidur - 1.", "",
             "| scheduler | load | QPS | metric | Vidur (s) | perfforge (s) | diff | perfforge with Vidur's lookups (s) | diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "vidur_error" in r:
            lines.append(f"| {r['scheduler']} | {r['load']} | {r['qps']:g} | all | {r['vidur_error']} | "
                         f"see JSON | | | |")
            continue
        for k in r["vidur"]:
            lines.append(f"| {r['scheduler']} | {r['load']} | {r['qps']:g} | {k.removesuffix('_s')} | "
                         f"{r['vidur'][k]:.4g} | {r['perfforge'][k]:.4g} | {r['perfforge_diff'][k]:+.1%} | "
                         f"{r['perfforge_vidur_lookups'][k]:.4g} | {r['perfforge_vidur_lookups_diff'][k]:+.1%} |")
    lines += ["", "Attribution: perfforge with one of Vidur's lookup behaviours at a time (diff vs Vidur; the "
              "as-shipped column is none, the aligned column is all). Behaviours: " + "; ".join(VIDUR_LOOKUPS) + ".", "",
              "| scheduler | load | metric | none | " + " | ".join(VIDUR_LOOKUPS) + " | all |",
              "|---|---|---|---|" + "---|" * len(VIDUR_LOOKUPS) + "---|"]
    for r in rows:
        if "vidur_error" in r:
            continue
        for k in ("ttft_p50_s", "tpot_p50_s", "e2e_p99_s"):
            cells = " | ".join(f"{r['single_lookup_diff'][q][k]:+.1%}" for q in VIDUR_LOOKUPS)
            lines.append(f"| {r['scheduler']} | {r['load']} | {k.removesuffix('_s')} | {r['perfforge_diff'][k]:+.1%} | "
                         f"{cells} | {r['perfforge_vidur_lookups_diff'][k]:+.1%} |")
    lines += ["", "CPU per simulated request (ms): Vidur's simulation loop against perfforge's whole `simulate` call, "
              "with its compiled core (the default) and its Python reference simulator.", "",
              "| scheduler | load | preemptions Vidur / perfforge / aligned | Vidur | perfforge compiled | ratio | "
              "perfforge Python | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "vidur_error" in r:
            continue
        p, c = r["preemptions"], r["cpu_s_per_request"]
        lines.append(f"| {r['scheduler']} | {r['load']} | {p['vidur']} / {p['perfforge']} / {p['perfforge_vidur_lookups']} | "
                     f"{c['vidur'] * 1e3:.3f} | {c['perfforge'] * 1e3:.4f} | {r['cpu_ratio']:.0f}x | "
                     f"{c['perfforge_python'] * 1e3:.3f} | {r['cpu_ratio_python']:.0f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
