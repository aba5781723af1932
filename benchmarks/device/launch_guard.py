"""Does the profiler's launch guard time a short kernel as the GPU runs it? (run on a GPU machine)

    python benchmarks/device/launch_guard.py --out DIR [--suite standard] [--max-seconds 170]

For every kernel case of the suite (the ``kernels`` group: GEMMs, LLM GEMMs, bmm, linear, convolutions and their
backward, attention, norms, softmax, pointwise), on one set of inputs, in alternating order:

* ``plain_s``: CUDA events around each call, all repeats enqueued, then one synchronize (the profiler before
  2026-11-27). A kernel shorter than its host launch reads as the launch gap.
* ``guarded_s``: the same behind the launch guard (``time_callable(..., launch_guard=True)``, the default now);
  ``guard`` says whether the spin held until every repeat was queued.
* ``cupti_s`` (cases whose plain time is under 100 us): the kernels' own durations from the PyTorch profiler
  (CUPTI), with the same L2 flush between calls and the flush's kernels left out: the reference.

Writes ``launch_guard.jsonl`` (one row per case, as measured) and ``launch_guard.json`` (device, software, medians
of the ratios). ``benchmarks/compare_launch_guard.py`` reads them back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

CUPTI_BELOW_S = 100e-6
CUPTI_CALLS = 20


def cupti_kernel_s(torch: Any, fn: Any, buf: Any) -> float:
    """Mean GPU time of ``fn``'s own kernels per call, over ``CUPTI_CALLS`` calls each preceded by
    the L2 flush (whose ``FillFunctor<int>`` kernels are excluded)."""
    from torch.profiler import ProfilerActivity, profile

    from perfforge.profiling.timing import cuda_kernel_us

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(CUPTI_CALLS):
            if buf is not None:
                buf.fill_(i)
            fn()
        torch.cuda.synchronize()
    total_us = cuda_kernel_us(prof, exclude="FillFunctor<int>" if buf is not None else None)
    if total_us <= 0:
        raise RuntimeError("the profiler reported no CUDA kernels")
    return total_us * 1e-6 / CUPTI_CALLS


def main() -> None:
    import torch

    from perfforge.profiling import kernels
    from perfforge.profiling.runner import device_info, software_info
    from perfforge.profiling.timing import TimingPlan, time_callable

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite", default="standard")
    ap.add_argument("--max-seconds", type=float, default=170.0)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()  # a CPU run is only a dry run of this script: no guard, no CUPTI
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    torch.backends.cudnn.benchmark = True
    dinfo = device_info(torch, dev)
    flush_bytes = 2 * int(dinfo.get("l2_bytes") or 0) or 256 * 1024 * 1024
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "launch_guard.jsonl"
    cases = kernels.kernel_cases(args.suite)
    start = time.monotonic()
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        if time.monotonic() - start > args.max_seconds:
            print(f"budget reached after {i} of {len(cases)} cases", flush=True)
            break
        row: dict[str, Any] = {"key": case.key, "op": case.op, "dtype": case.dtype, "l2_flush": case.l2_flush}
        try:
            kernels.set_precision_flags(case.dtype)
            torch.manual_seed(0)
            fn, _ = case.setup(dev)
            plan = case.plan or TimingPlan()
            kw = dict(device=dev, warmup=plan.warmup, repeats=plan.repeats, l2_flush=case.l2_flush,
                      max_time_s=plan.max_time_s, min_repeats=plan.min_repeats, flush_bytes=flush_bytes)
            order = (False, True) if i % 2 == 0 else (True, False)
            for guard in order:
                res = time_callable(fn, launch_guard=guard, **kw)
                name = "guarded" if guard else "plain"
                row[f"{name}_s"], row[f"{name}_repeats"] = res.median_s, res.repeats
                if guard:
                    row["guard"] = res.guard
            if cuda and row["plain_s"] < CUPTI_BELOW_S:
                buf = (torch.empty(max(1, flush_bytes // 4), dtype=torch.int32, device=dev)
                       if case.l2_flush else None)
                row["cupti_s"] = cupti_kernel_s(torch, fn, buf)
                del buf
            del fn
        except Exception as exc:  # noqa: BLE001 - recorded; the other cases still count
            row["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        rows.append(row)
        with rows_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if i % 25 == 0:
            print(f"[{i}/{len(cases)} {time.monotonic() - start:.0f}s] {json.dumps(row)}", flush=True)

    def ratios(a: str, b: str) -> list[float]:
        return [r[a] / r[b] for r in rows if a in r and b in r and r[b] > 0]

    (out / "launch_guard.json").write_text(json.dumps(
        {"device": dinfo, "software": software_info(torch), "cases": len(rows),
         "median_plain_over_cupti": statistics.median(ratios("plain_s", "cupti_s") or [float("nan")]),
         "median_guarded_over_cupti": statistics.median(ratios("guarded_s", "cupti_s") or [float("nan")]),
         "guard_held": sum(r.get("guard") == "held" for r in rows)}, indent=2) + "\n")
    print(f"done: {len(rows)} cases in {time.monotonic() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
