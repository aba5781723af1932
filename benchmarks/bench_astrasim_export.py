"""Speed and size of `perfforge astra-sim export`: what it costs to hand a perfforge scenario to ASTRA-sim.

One Chakra trace per rank is written in Python (no protobuf codegen), so the export grows with the rank count,
unlike perfforge's own symmetric simulation; the same scenario's `perfforge.train` in the same process is the
baseline. `perfforge astra-sim replay` of each export is timed too. Run: `python benchmarks/bench_astrasim_export.py`
(writes into a temporary folder).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import perfforge
from perfforge.adapters.astrasim import export
from perfforge.adapters.chakra_replay import replay_export
from perfforge.scenario import make_scenario

CASES = {
    "ResNet-50 DP, 64 H100s": dict(model="resnet50", hardware="h100-sxm5-80gb", gpus=64, batch=256, dtype="fp16",
                                   optimizer="sgd_momentum"),
    "GPT-3 175B, TP 8 x PP 8 x DP 2 (128 A100s)": dict(model="megatron-gpt-175b", hardware="a100-sxm4-80gb", gpus=128,
                                                      tp=8, pp=8, microbatches=16, batch=32, seq=2048, dtype="fp16",
                                                      recompute=True),
}


def main() -> None:
    for name, kw in CASES.items():
        scenario = make_scenario(mode="train", engine="distributed", **kw)
        train_kw = {k: v for k, v in kw.items() if k not in ("model", "hardware")}
        t0 = time.process_time()
        perfforge.train(kw["model"], kw["hardware"], **train_kw)
        own = time.process_time() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.process_time()
            manifest = export(scenario, tmp)
            took = time.process_time() - t0
            size = sum(f.stat().st_size for f in Path(tmp).iterdir())
            t0 = time.process_time()
            out = replay_export(tmp)
            replayed = time.process_time() - t0
        print(f"{name}: export {took:.2f} s CPU, {manifest['npus']} traces of up to {manifest['nodes_per_trace']} "
              f"nodes, {size / 1e6:.1f} MB; perfforge.train {own * 1e3:.0f} ms CPU ({took / own:.0f}x); "
              f"replay {replayed:.2f} s CPU, {out['ratio']:.3f}x perfforge's step")


if __name__ == "__main__":
    main()
