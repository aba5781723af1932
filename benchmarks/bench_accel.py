"""Speed and agreement of perfforge's accelerator models. Run: python benchmarks/bench_accel.py

Prints: whole-ResNet-50 systolic evaluation time (ws/os/is, 32x32 and 128x128), the Eyeriss-like VGG02
layer-5 evaluation against Timeloop's reference, and one mapper run (mappings/s, EDP vs Timeloop mapper's map).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from perfforge.accelerators import mapper, nest, timeloop_io
from perfforge.accelerators.systolic import SystolicArraySpec, simulate
from perfforge.accelerators.topology import from_workload
from perfforge.workload.zoo import get_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    layers = from_workload(get_model("resnet50", batch=1))
    for n in (32, 128):
        for df in ("ws", "os", "is"):
            t0 = time.perf_counter()
            res = simulate(layers, SystolicArraySpec(rows=n, cols=n, dataflow=df))
            dt = time.perf_counter() - t0
            print(f"resnet50 {n}x{n} {df}: {res.total_compute_cycles:,} cycles, util {res.total_utilization:.3f}, "
                  f"{dt * 1e3:.2f} ms")
    d = ROOT / "data" / "accelerators" / "timeloop"
    arch, prob, m, spec = timeloop_io.load([d / "eyeriss_like_vgg02_layer5.yaml", d / "ERT.yaml",
                                            d / "vgg02_layer5.map.yaml"])
    t0 = time.perf_counter()
    ref = nest.evaluate(arch, m, prob)
    print(f"eyeriss vgg02_layer5: {ref.cycles:,.0f} cycles, {ref.energy_pj / 1e6:.2f} uJ "
          f"(Timeloop 5,505,024 cycles, 2764.38 uJ), {(time.perf_counter() - t0) * 1e3:.2f} ms")
    cons = mapper.constraints_from_timeloop(spec, arch, prob)
    from perfforge.accelerators.batch import BatchEvaluator

    be = BatchEvaluator(arch, prob, [lm.keep for lm in m.levels])
    g = mapper.Space(arch, prob, cons).random(np.random.default_rng(0), 8192)
    t0 = time.perf_counter()
    be.evaluate(g)
    print(f"vectorised evaluation: {8192 / (time.perf_counter() - t0):,.0f} mappings/s (batch of 8192); "
          f"scalar nest.evaluate: {1 / max(1e-9, _scalar_s(arch, m, prob)):,.0f}/s")
    for seed in range(3):
        r = mapper.search(arch, prob, constraints=cons, victory_condition=500, timeout_s=60, seed=seed)
        print(f"mapper seed {seed} ({r.method}): {r.evaluated} evaluated ({r.valid} valid) in {r.seconds:.2f} s = "
              f"{r.mappings_per_s:,.0f}/s; best EDP / Timeloop-mapper-map EDP = {r.evaluation.edp / ref.edp:.3f} "
              f"(cycles {r.evaluation.cycles:,.0f}, energy {r.evaluation.energy_pj / 1e6:.1f} uJ; "
              f"refinement gain {r.refined_gain:.2f}x over the best random mapping)")


def _scalar_s(arch, m, prob) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for _ in range(200):
        nest.evaluate(arch, m, prob)
    return (time.perf_counter() - t0) / 200

if __name__ == "__main__":
    main()
