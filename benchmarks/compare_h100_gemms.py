"""Why perfforge's serving table is slower than Vidur's H100 profile at small token counts.

    python benchmarks/compare_h100_gemms.py

Prints, for Llama-2-7B's projection GEMMs (TP 1, fp16), the time perfforge's own H100 measurements give
(``data/ground_truth/measured/h100-sxm-*``: two boards, L2 flushed before every repeat) over the time
in Vidur's H100 profile (``data/ground_truth/vidur/profiling/compute/h100/.../Llama-2-7b-hf/mlp.csv.gz``),
at the token counts both measured. perfforge's Hopper calibration was fitted on its own measurements, so
this ratio is the gap the serving report's H100 rows show.
"""

from __future__ import annotations

import csv
import gzip
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIDUR = ROOT / "data/ground_truth/vidur/profiling/compute/h100/meta-llama/Llama-2-7b-hf/mlp.csv.gz"
OPS = {"attn_pre_proj": (12288, 4096), "attn_post_proj": (4096, 4096), "mlp_down_proj": (4096, 11008)}


def vidur_times() -> dict[tuple[int, int, int], float]:
    """(tokens, n, k) -> median ms over Vidur's TP-1 rows."""
    acc: dict[tuple[int, int, int], list[float]] = {}
    with gzip.open(VIDUR, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["num_tensor_parallel_workers"] != "1":
                continue
            for op, (n, k) in OPS.items():
                acc.setdefault((int(row["num_tokens"]), n, k), []).append(float(row[f"time_stats.{op}.median"]))
    return {key: statistics.median(v) for key, v in acc.items()}


def own_times() -> dict[tuple[int, int, int], float]:
    acc: dict[tuple[int, int, int], list[float]] = {}
    for path in sorted((ROOT / "data/ground_truth/measured").glob("h100-sxm-*/measurements.jsonl.gz")):
        with gzip.open(path, "rt") as fh:
            for line in fh:
                rec = json.loads(line)
                if rec["op"] == "matmul" and rec["dtype"] == "fp16" and rec.get("latency_s"):
                    p = rec["params"]
                    acc.setdefault((p["m"], p["n"], p["k"]), []).append(rec["latency_s"] * 1e3)
    return {key: statistics.median(v) for key, v in acc.items()}


METHODS = ROOT / "data/ground_truth/measured/h100-gemm-timing-20261126/gemm_timing_methods.json"


def method_times() -> dict[tuple[int, int, int], dict[str, float]]:
    """The same GEMMs timed three ways on one H100 (benchmarks/device/gemm_timing_methods.py)."""
    if not METHODS.exists():
        return {}
    rows = json.loads(METHODS.read_text())["rows"]
    return {(r["m"], r["n"], r["k"]): r for r in rows}


def main() -> None:
    vid, own, methods = vidur_times(), own_times(), method_times()
    both = sorted(set(vid) & set(own))
    print(f"{'tokens':>6s} {'n':>6s} {'k':>6s} {'weights MB':>10s} {'perfforge-measured ms':>22s} {'Vidur ms':>9s} {'ratio':>6s}")
    small, large = [], []
    for m, n, k in both:
        ratio = own[(m, n, k)] / vid[(m, n, k)]
        (small if m <= 32 else large).append(ratio)
        print(f"{m:6d} {n:6d} {k:6d} {n * k * 2 / 1e6:10.1f} {own[(m, n, k)]:22.4f} {vid[(m, n, k)]:9.4f} {ratio:6.2f}")
    print(f"median ratio: {statistics.median(small):.2f} at <= 32 tokens, {statistics.median(large):.2f} at >= 512 tokens")
    if methods:
        print("\nVidur's time over each timing method on one H100 (median over shapes):")
        for name in ("events_flush_ms", "events_warm_ms", "kernel_warm_ms"):
            for label, keep in (("<= 32 tokens", lambda m: m <= 32), (">= 512 tokens", lambda m: m >= 512)):
                r = [vid[key] / methods[key][name] for key in both if key in methods and keep(key[0])]
                print(f"  {name[:-3]:13s} {label:13s} {statistics.median(r):.2f}  ({len(r)} shapes)")


if __name__ == "__main__":
    main()
