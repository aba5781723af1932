"""Speed of the learned backend: whole-model predictions and batches of single kernels.

Run: `python benchmarks/bench_learned.py`. Target (issue 6): a whole GPT2-Large training-step prediction
with `backend="learned"` in under 100 ms. Prints medians of repeated in-process calls (after one warm-up
call that loads the catalog and the model), with the analytical backend on the same call as a baseline.
"""

from __future__ import annotations

from timing import median_time

import perfforge
from perfforge.engines.learned.model import load_model
from perfforge.engines.learned.ops import build_op
from perfforge.system.catalog import get_device

CASES = [
    ("gpt2-large", dict(mode="train", batch=8, seq=1024, dtype="fp32"), "v100-pcie-32gb"),
    ("gpt2-large", dict(mode="train", batch=8, seq=1024, dtype="bf16"), "h100-sxm5-80gb"),
    ("bert-large", dict(mode="inference", batch=8, seq=512, dtype="fp32"), "a100-pcie-40gb"),
    ("llama-2-70b", dict(mode="train", batch=1, seq=4096, dtype="bf16"), "h100-sxm5-80gb"),
]


def main() -> None:
    perfforge.predict("gpt2", "h100-sxm5-80gb", backend="learned")  # warm caches (catalog, model)
    print(f"{'model':12s} {'mode':10s} {'hardware':16s} {'learned (ms)':>13s} {'analytical (ms)':>16s}")
    for model, kw, hw in CASES:
        t_l = median_time(lambda m=model, h=hw, k=kw: perfforge.predict(m, h, backend="learned", **k), 9)
        t_a = median_time(lambda m=model, h=hw, k=kw: perfforge.predict(m, h, **k), 9)
        print(f"{model:12s} {kw['mode']:10s} {hw:16s} {1e3 * t_l:13.1f} {1e3 * t_a:16.1f}")
    model, dev = load_model(), get_device("a100-pcie-40gb")
    ops = [build_op("bmm", {"B": b, "M": m, "N": 512, "K": 64}, "fp32") for b in range(1, 101) for m in (128, 256, 512, 1024, 2048)]
    t = median_time(lambda: model.predict_ops([o for o, _ in ops], dev, [c for _, c in ops]), 5)
    print(f"{len(ops)} distinct bmm kernels in one batch: {1e3 * t:.1f} ms ({1e6 * t / len(ops):.1f} us per kernel)")


if __name__ == "__main__":
    main()
