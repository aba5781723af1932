"""Speed of predictions: in-process `predict` calls and the CLI end to end.

Prints medians over repeated runs and, as a same-process baseline, the cost of building the workload
alone, so the ratio says how much of a call is the engine. Run: `python benchmarks/bench_predict.py`.
Targets (issue 2): ResNet-50 predict < 50 ms in process; CLI end to end < 1 s.
"""

from __future__ import annotations

import subprocess
import sys

from timing import median_time

import perfforge
from perfforge.workload.zoo import get_model

CASES = [
    ("resnet50", dict(mode="train", batch=256, dtype="fp16")),
    ("gpt2", dict(mode="inference", batch=1, seq=1024, dtype="fp16")),
    ("bert-large", dict(mode="inference", batch=1, seq=512, dtype="fp16")),
    ("llama-2-70b", dict(mode="train", batch=1, seq=4096, dtype="bf16")),
    ("gpt3-175b", dict(mode="train", batch=1, seq=2048, dtype="bf16")),
]


def main() -> None:
    perfforge.predict("resnet50", "a100-sxm4-80gb")  # warm caches (catalog, calibration)
    print(f"{'model':14s} {'predict (ms)':>13s} {'build only (ms)':>16s} {'engine share':>13s}")
    for model, kw in CASES:
        t_pred = median_time(lambda m=model, k=kw: perfforge.predict(m, "a100-sxm4-80gb", **k), 15)
        build_kw = {k: v for k, v in kw.items() if k in ("batch", "seq", "dtype")}
        t_build = median_time(lambda m=model, k=build_kw: get_model(m, **k), 15)
        print(f"{model:14s} {t_pred * 1e3:13.1f} {t_build * 1e3:16.1f} {1 - t_build / t_pred:13.0%}")
    cmd = [sys.executable, "-m", "perfforge.cli.main", "predict", "--model", "resnet50", "--hardware",
           "a100-sxm4-80gb", "--batch", "256", "--mode", "train", "--dtype", "fp16", "--json"]
    t_cli = median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), 7)
    t_py = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 7)
    print(f"CLI end to end (resnet50 train --json): {t_cli * 1e3:.0f} ms median of 7; "
          f"bare interpreter start {t_py * 1e3:.0f} ms (ratio {t_cli / t_py:.1f}x)")


if __name__ == "__main__":
    main()
