"""Speed of the distributed engine: one ResNet-50 data-parallel step on 8, 64 and 1024 GPUs.

Issue targets: 64 NPUs in under 50 ms of CPU, 1024 NPUs in under 200 ms, GPT-3 175B TP8 x PP8 x DP16 under 1 s (the real ASTRA-sim took about 3 s
for 64 NPUs on this kind of machine, per the issue). Data parallelism is simulated on one device's timeline,
so the cost should not grow with the GPU count; the single-GPU predict in the same process is the baseline.
Run: `python benchmarks/bench_train.py`.
"""

from __future__ import annotations

import statistics
import time

import perfforge


def median_ms(fn, repeats: int = 15) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        samples.append(time.process_time() - t0)
    return statistics.median(samples) * 1e3


def main() -> None:
    kw = dict(batch=256, dtype="fp16", optimizer="sgd_momentum")
    perfforge.train("resnet50", "h100-sxm5-80gb", gpus=8, **kw)  # warm caches
    base = median_ms(lambda: perfforge.predict("resnet50", "h100-sxm5-80gb", mode="train", **kw))
    print(f"baseline: single-GPU predict {base:.1f} ms CPU (median of 15)")
    for gpus in (8, 64, 1024):
        t = median_ms(lambda g=gpus: perfforge.train("resnet50", "h100-sxm5-80gb", gpus=g, **kw))
        print(f"ResNet-50 DP on {gpus:5d} GPUs: {t:6.1f} ms CPU (median of 15), {t / base:.2f}x the single-GPU predict")
    gpt = dict(gpus=1024, tp=8, pp=8, batch=96, microbatches=96, seq=2048, dtype="bf16", recompute=True)
    t = median_ms(lambda: perfforge.train("gpt3-175b", "a100-sxm4-80gb", **gpt), repeats=5)
    print(f"GPT-3 175B, TP 8 x PP 8 x DP 16 on 1024 GPUs: {t:6.1f} ms CPU (median of 5); issue target < 1000 ms")
    # the largest published Megatron-LM layout in data/ground_truth/published.yaml: 1F1B simulated stage by stage
    one_t = dict(gpus=512, tp=8, pp=64, batch=512, microbatches=512, seq=2048, dtype="fp16", recompute=True)
    t = median_ms(lambda: perfforge.train("megatron-gpt-1t", "a100-sxm4-80gb", **one_t), repeats=3)
    print(f"Megatron GPT 1T, TP 8 x PP 64, 512 microbatches (1F1B, 64 x 512 x 2 pipeline ops): {t:6.1f} ms CPU (median of 3)")
    # the published 530B layout, interleaved with 3 chunks per stage: 35 x 280 x 3 x 2 pipeline ops simulated
    mt_nlg = dict(gpus=280, tp=8, pp=35, batch=280, microbatches=280, seq=2048, dtype="fp16", recompute=True,
                  schedule="interleaved", virtual_stages=3, node="dgx-a100")
    t = median_ms(lambda: perfforge.train("megatron-gpt-530b", "a100-sxm4-80gb", **mt_nlg), repeats=3)
    print(f"Megatron GPT 530B, TP 8 x PP 35, 280 microbatches, interleaved v = 3 (35 x 280 x 3 x 2 pipeline ops): "
          f"{t:6.1f} ms CPU (median of 3)")


if __name__ == "__main__":
    main()
