"""How the timing method changes a small GEMM's measured time (run on a GPU machine).

    python benchmarks/device/gemm_timing_methods.py --out DIR

For Llama-2-7B's projection GEMMs (fp16, TP 1) at 1-4096 tokens, three timings of ``torch.matmul``:

* ``events_flush``: perfforge's profiler (CUDA events around each call, L2 overwritten before each repeat);
* ``events_warm``: the same without the flush, so the weights may stay in L2 between repeats;
* ``kernel_warm``: the GEMM kernels' own durations from the PyTorch profiler (no launch gap), warm L2.

Writes ``gemm_timing_methods.json`` with the device name; ``benchmarks/compare_h100_gemms.py`` explains why.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SHAPES = [(m, n, k) for m in (1, 8, 16, 32, 512, 2048, 4096)
          for n, k in ((12288, 4096), (4096, 4096), (4096, 11008))]


def main() -> None:
    import torch

    from perfforge.profiling.timing import kernel_time_s, time_callable

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    flush_bytes = 2 * int(getattr(props, "L2_cache_size", 0) or 0) or 256 * 1024 * 1024
    rows = []
    for m, n, k in SHAPES:
        a = torch.randn(m, k, device=dev, dtype=torch.float16)
        b = torch.randn(k, n, device=dev, dtype=torch.float16)

        def fn(a=a, b=b):  # noqa: ANN001, ANN202
            return torch.matmul(a, b)

        row = {"m": m, "n": n, "k": k}
        for name, flush in (("events_flush", True), ("events_warm", False)):
            res = time_callable(fn, device=dev, warmup=5, repeats=50, l2_flush=flush, max_time_s=1.0,
                                flush_bytes=flush_bytes)
            row[f"{name}_ms"] = res.median_s * 1e3
        try:
            row["kernel_warm_ms"] = kernel_time_s(fn, repeats=1, calls=50) * 1e3
        except Exception as exc:  # noqa: BLE001 - recorded, the other methods still count
            row["kernel_warm_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemm_timing_methods.json").write_text(json.dumps(
        {"device": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
         "l2_bytes": getattr(props, "L2_cache_size", None), "rows": rows,
         "median_ratio_flush_over_warm": statistics.median(r["events_flush_ms"] / r["events_warm_ms"] for r in rows)},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
