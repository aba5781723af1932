"""Measure whole-decoder serving iterations (prefill, decode) on the local GPU; write JSON lines.

    python benchmarks/device/llm_iterations.py --out DIR [--models llama-2-7b,llama-3-8b] [--suite standard]

Random weights, fp16, Llama-architecture decoders built from perfforge's zoo configs
(``perfforge.profiling.llm_steps``). ``perfforge profile --only llm`` measures the same cases into the
project's measurement schema; this script wrote the committed H100/H200 files. ``DIR/llm_iterations.jsonl`` gets one record per case with the device
and software metadata; the serving suite compares them with perfforge's batch-time model.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def main() -> None:
    import torch

    from perfforge.profiling.llm_steps import measure
    from perfforge.profiling.records import utc_now_iso

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="llama-2-7b,llama-3-8b")
    ap.add_argument("--suite", default="standard", choices=("tiny", "standard"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="fp16")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        device = {"name": props.name, "sm_count": props.multi_processor_count, "memory_bytes": props.total_memory}
    else:
        device = {"name": platform.processor() or platform.machine()}
    software = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "llm_iterations.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        def emit(rec: dict) -> None:
            fh.write(json.dumps({**rec, "device": device, "software": software, "date": utc_now_iso(),
                                 "source": "perfforge llm_steps (own measurement)"}) + "\n")
            fh.flush()

        for model in args.models.split(","):
            measure(model.strip(), args.suite, dev, args.dtype, emit=emit)
            if dev.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
