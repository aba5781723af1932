"""Whole-model runs with a per-operator breakdown: NeuSight's benchmark transformers, FP32, on the local GPU.

NeuSight (Lee et al., ASPLOS 2025) scores its predictor per op class on whole-model runs: the latencies of all
kernels of one class (BMM, Linear, softmax, layer norm, other vector ops) in one model run are summed, and the
error of that sum is reported. Its labels cover BERT-Large, GPT2-Large, "GPT3-XL" (d_model 3072), GPT3-2.7B and
OPT-1.3B, FP32, in inference (forward) and training (forward + backward) at fixed batch and sequence sizes
(sitar-lab/NeuSight ``scripts/asplos/label/<GPU>/<model>-<inf|train>-<seq>-<batch>.json``).

This group runs those configurations with HuggingFace ``transformers`` (random weights, eager attention so that
the attention matmuls and softmax run as separate kernels, as in NeuSight's traced graphs; dropout 0, TF32 off).
Each case records

* ``latency_s``: CUDA events around one forward (inference) or one ``zero_grad`` + forward + backward (training,
  no optimizer step, the part NeuSight's training labels time); and
* ``extra.ops``: one PyTorch-profiler pass of the same call, the GPU time of every ATen op grouped by op name and
  input shapes (``self_device_s`` is the time of the kernels the op itself launched), from which the per-class
  sums are formed at evaluation time (``perfforge.evaluation.op_breakdown``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from typing import Any

# (perfforge zoo id, mode, batch, sequence): NeuSight's label configurations (its H100 label set), smallest first
STANDARD_CASES: tuple[tuple[str, str, int, int], ...] = (
    ("bert-large", "inference", 8, 512), ("bert-large", "inference", 16, 512),
    ("bert-large", "train", 2, 512), ("bert-large", "train", 8, 512),
    ("gpt2-large", "inference", 4, 1024), ("gpt2-large", "inference", 8, 1024),
    ("gpt2-large", "train", 1, 1024), ("gpt2-large", "train", 4, 1024),
    ("opt-1.3b", "inference", 2, 2048), ("opt-1.3b", "inference", 8, 2048),
    ("opt-1.3b", "train", 1, 2048), ("opt-1.3b", "train", 2, 2048),
    ("gpt3-xl-neusight", "inference", 2, 2048), ("gpt3-xl-neusight", "inference", 8, 2048),
    ("gpt3-xl-neusight", "train", 1, 2048),
    ("gpt3-2.7b", "inference", 2, 2048), ("gpt3-2.7b", "inference", 8, 2048),
    ("gpt3-2.7b", "train", 1, 2048),
)
SUITE_CASES = {"tiny": (("tiny-gpt2", "inference", 2, 32), ("tiny-gpt2", "train", 1, 32),
                        ("tiny-bert", "inference", 2, 32), ("tiny-opt", "train", 1, 32)),
               "smoke": (("bert-large", "inference", 8, 512), ("gpt2-large", "train", 1, 1024)),
               "standard": STANDARD_CASES}
# NeuSight's names for the same models (its label files), recorded with each case
NEUSIGHT_NAMES = {"bert-large": "bert_large", "gpt2-large": "gpt2_large", "gpt3-xl-neusight": "gpt3_xl",
                  "gpt3-2.7b": "gpt3_27", "opt-1.3b": "opt_13"}
# (layers, hidden, heads) of GPT-2-architecture models; OPT and BERT below
_GPT2_ARCH = {"gpt2-large": (36, 1280, 20, 1024), "gpt3-xl-neusight": (24, 3072, 24, 2048),
              "gpt3-2.7b": (32, 2560, 32, 2048), "tiny-gpt2": (2, 64, 4, 64)}
_BERT_ARCH = {"bert-large": (24, 1024, 16, 4096), "tiny-bert": (2, 64, 4, 128)}
_OPT_ARCH = {"opt-1.3b": (24, 2048, 32, 8192), "tiny-opt": (2, 64, 4, 128)}
TIMING = {"tiny": (1, 2), "smoke": (1, 3), "standard": (1, 3)}  # (warmup, repeats) per suite


def _transformers() -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers as tf
    except ImportError as exc:
        from perfforge.profiling.models import MissingDependency

        raise MissingDependency(f"transformers not installed ({exc})") from None
    return tf


def hf_config(model_id: str, dropout: float | None) -> tuple[Any, str, int]:
    """The HF config of one of these models, its family ("gpt2", "bert", "opt") and vocabulary size.
    ``dropout`` sets every dropout probability; None keeps the config classes' defaults (0.1 here, as NeuSight ran)."""
    tf = _transformers()
    if model_id in _GPT2_ARCH:
        layers, hidden, heads, positions = _GPT2_ARCH[model_id]
        drop = {} if dropout is None else dict(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
        return tf.GPT2Config(n_layer=layers, n_embd=hidden, n_head=heads, n_positions=positions, vocab_size=50257,
                             use_cache=False, **drop), "gpt2", 50257
    if model_id in _BERT_ARCH:
        layers, hidden, heads, inter = _BERT_ARCH[model_id]
        drop = {} if dropout is None else dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        return tf.BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                             intermediate_size=inter, vocab_size=30522, max_position_embeddings=512, **drop), "bert", 30522
    if model_id in _OPT_ARCH:
        layers, hidden, heads, ffn = _OPT_ARCH[model_id]
        drop = {} if dropout is None else dict(dropout=dropout, attention_dropout=dropout, activation_dropout=dropout)
        return tf.OPTConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads, ffn_dim=ffn,
                            word_embed_proj_dim=hidden, vocab_size=50272, max_position_embeddings=2048,
                            use_cache=False, **drop), "opt", 50272
    raise ValueError(f"unknown model {model_id!r} (choose from {', '.join(_GPT2_ARCH | _BERT_ARCH | _OPT_ARCH)})")


def neusight_label(neusight_name: str, mode: str, seq: int, batch: int) -> str:
    """NeuSight's label name of one configuration (``<model>-<inf|train>-<seq>-<batch>``)."""
    return f"{neusight_name}-{'inf' if mode == 'inference' else 'train'}-{seq}-{batch}"


def build_model(model_id: str, dev: Any) -> tuple[Any, int]:
    """The model with random FP32 weights on ``dev`` and its vocabulary size (dropout 0, eager attention)."""
    import torch

    tf = _transformers()
    cfg, family, vocab = hf_config(model_id, 0.0)
    cls = {"gpt2": tf.GPT2LMHeadModel, "bert": tf.BertModel, "opt": tf.OPTForCausalLM}[family]
    with torch.device(dev):
        model = cls._from_config(cfg, attn_implementation="eager")   # fp32: torch's default dtype
    return model, vocab


def make_step(model: Any, vocab: int, mode: str, batch: int, seq: int, dev: Any) -> Callable[[], object]:
    """One forward (``inference``) or one zero-grad + forward + backward (``train``) on random token ids.
    Training back-propagates a gradient of ones into the model's output, so no loss kernels are added."""
    import torch

    ids = torch.randint(0, vocab, (batch, seq), device=dev)

    def output() -> Any:
        out = model(input_ids=ids)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state

    if mode == "inference":
        model.eval()

        def infer() -> object:
            with torch.inference_mode():
                return output()
        return infer
    model.train()
    grad: list[Any] = []

    def train() -> None:
        model.zero_grad(set_to_none=True)
        y = output()
        if not grad:
            grad.append(torch.ones_like(y))
        y.backward(grad[0])
    return train


def op_table(fn: Callable[[], object], cuda: bool = True) -> tuple[list[dict[str, Any]], float]:
    """Time of each ATen op of one call of ``fn``, grouped by (op, input shapes), and the call's total kernel
    time. On a GPU, times are the kernels each op launched itself (the profiler's self device time); on a CPU
    (tests, smoke runs) they are self CPU times."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    fn()
    sync()
    with profile(activities=activities, record_shapes=True) as prof:
        fn()
        sync()
    rows = []
    for avg in prof.key_averages(group_by_input_shape=True):
        us = float(avg.self_device_time_total if cuda else avg.self_cpu_time_total)
        if us > 0 and str(avg.device_type).endswith("CPU"):
            rows.append({"op": avg.key, "shapes": [list(s) for s in (avg.input_shapes or [])],
                         "calls": int(avg.count), "self_device_s": us * 1e-6})
    rows.sort(key=lambda r: -r["self_device_s"])
    if cuda:
        from perfforge.profiling.timing import cuda_kernel_us

        return rows, cuda_kernel_us(prof) * 1e-6
    return rows, sum(r["self_device_s"] for r in rows)


def case_key(model_id: str, mode: str, batch: int, seq: int) -> tuple[str, dict[str, Any]]:
    """The measurement key and params of one case (FP32)."""
    from perfforge.profiling.records import make_key

    params: dict[str, Any] = {"model": model_id, "mode": mode, "batch": batch, "seq": seq, "attention": "eager",
                              "dropout": 0.0, "breakdown": True}
    if mode == "train":
        params["exclude_optimizer"] = True
    if model_id in NEUSIGHT_NAMES:
        params["neusight_label"] = neusight_label(NEUSIGHT_NAMES[model_id], mode, seq, batch)
    return make_key("model", f"{model_id}_{mode}_ops", "fp32", params), params


def measure_records(suite: str, dev: Any, base: Any, done: set[str], emit: Callable[[Any], None],
                    say: Callable[[str], None]) -> int:
    """``perfforge profile --only breakdown``: the suite's cases as measurement records (resumable by key)."""
    import torch

    from perfforge.profiling.kernels import set_precision_flags
    from perfforge.profiling.records import group_on_device, utc_now_iso
    from perfforge.profiling.timing import time_callable

    cuda = group_on_device("breakdown", suite, SUITE_CASES, dev, needs="runs 0.3-2.9B-parameter FP32 transformers",
                           tiny="runs two-layer models")
    set_precision_flags("fp32")   # strict FP32 (TF32 off) as NeuSight measured it
    empty_cache = torch.cuda.empty_cache if cuda else (lambda: None)
    warmup, repeats = TIMING[suite]
    todo = [c for c in SUITE_CASES[suite] if case_key(*c)[0] not in done]
    ran, built = 0, ("", None, 0)
    for model_id, mode, batch, seq in todo:
        key, params = case_key(model_id, mode, batch, seq)
        rec = replace(base, key=key, kind="model", op=f"{model_id}_{mode}", params=params, dtype="fp32",
                      group="breakdown", timer="cuda_event", l2_flush=False, repeats=repeats, warmup=warmup,
                      date=utc_now_iso())
        try:
            if built[0] != model_id:
                built = ("", None, 0)
                gc.collect()
                empty_cache()
                built = (model_id, *build_model(model_id, dev))
            fn = make_step(built[1], built[2], mode, batch, seq, dev)
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            t = time_callable(fn, device=dev, warmup=warmup, repeats=repeats, min_repeats=repeats, max_time_s=30.0)
            ops, kernels_s = op_table(fn, cuda)
            attributed = sum(o["self_device_s"] for o in ops)
            rec = replace(rec, latency_s=t.median_s, latency_p10_s=t.p10_s, latency_p90_s=t.p90_s,
                          repeats=t.repeats, throughput_per_s=batch / t.median_s,
                          timer="cuda_event" if cuda else "wall",
                          peak_memory_bytes=int(torch.cuda.max_memory_allocated(dev)) if cuda else None,
                          extra={"kernel_sum_s": kernels_s, "attributed_s": attributed, "ops": ops,
                                 "timing": "CUDA events around the eager call; ops from one profiled call"})
            say(f"breakdown {model_id} {mode} b={batch} s={seq}: {t.median_s * 1e3:.2f} ms "
                f"(kernels {kernels_s * 1e3:.2f} ms, attributed {attributed / max(kernels_s, 1e-12):.1%})")
        except Exception as exc:  # noqa: BLE001 - recorded; the other cases still run
            rec = replace(rec, error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
            say(f"breakdown {model_id} {mode} b={batch} s={seq}: {rec.error}")
            built = ("", None, 0)
            gc.collect()
            empty_cache()
        emit(rec)
        ran += 1
    return ran
