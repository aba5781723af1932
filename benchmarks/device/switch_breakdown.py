"""Per-ATen-op GPU time of NeuSight's Switch-XL as its harness runs it (perfforge.profiling.neusight_e2e.build),
padded experts and transformers' own layer, inference and training (forward + cross-entropy + backward), one
profiled call each after two warm-ups; with the call's wall time (CUDA events) against its kernel sum, which
shows how much of the step the GPU waits on the host (Switch's routing syncs with the host once per expert).
Usage: python benchmarks/device/switch_breakdown.py OUT.json [tiny]   (tiny: a two-layer model on a CPU)."""

import json
import sys

import torch

from perfforge.profiling.kernels import set_precision_flags
from perfforge.profiling.neusight_e2e import E2ECase, _patch_switch, build
from perfforge.profiling.op_breakdown import op_table

out_path, tiny = sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "tiny"
dev = torch.device("cpu" if tiny else "cuda")
cuda = dev.type == "cuda"
set_precision_flags("fp32")
torch.backends.cudnn.benchmark = True
model_id, seq = ("tiny-switch", 32) if tiny else ("switch-xl", 512)
results = []


def make_step(model, logits, inputs, mode):
    ids = inputs["input_ids"]

    def step():
        if mode == "inference":
            with torch.no_grad():
                return model(**inputs)
        lg = logits(model(**inputs))
        torch.nn.functional.cross_entropy(lg.view(-1, lg.size(-1)), ids.view(-1)).backward()
    return step


for experts in ("padded", "hf"):
    for mode, batch in (("inference", 1), ("train", 1), ("inference", 2)):
        case = E2ECase(model_id, mode, batch, seq, experts)
        model, logits, inputs = build(case, dev)
        step = make_step(model, logits, inputs, mode)
        step()
        if cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            walls = []
            for _ in range(5):
                start.record()
                step()
                end.record()
                torch.cuda.synchronize()
                walls.append(start.elapsed_time(end) * 1e-3)
            wall = sorted(walls)[2]
        else:
            wall = 0.0
        ops, kernels_s = op_table(step, cuda)
        rec = {"model": model_id, "mode": mode, "batch": batch, "seq": seq, "experts": experts,
               "wall_median_s": wall, "kernel_sum_s": kernels_s, "ops": ops[:60]}
        results.append(rec)
        print(f"{experts} {mode} b{batch}: wall {wall * 1e3:.2f} ms, kernels {kernels_s * 1e3:.2f} ms", flush=True)
        for o in ops[:12]:
            print(f"   {o['op']:40s} {o['calls']:5d} {o['self_device_s'] * 1e3:8.2f} ms {o['shapes'][:2]}")
        del model, step
        if cuda:
            torch.cuda.empty_cache()
        with open(out_path, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                       "results": results}, fh)
_patch_switch(False)
