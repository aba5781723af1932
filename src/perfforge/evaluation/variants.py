"""Graph variants an experiment can predict with.

- ``zoo``: perfforge's own graph of the architecture (fused attention and activations): what an efficient
  implementation runs.
- ``zoo-unfused``: the same graph executed eagerly, as HuggingFace runs it: GPT-2's tanh GELU as its 8
  pointwise kernels, and attention as the run had it: QK^T, scale, mask, softmax and PV kernels for
  ``attn_implementation="eager"``, one fused kernel for "sdpa" (HF's default; ``attention_impl="sdpa"``).
Both zoo variants add the run's dropout kernels, build the run's HF head (BERT's masked-LM head for
``BertForMaskedLM``) and follow its precision: a run under ``torch.autocast`` is
predicted with ``amp=True`` (fp32 weights, fp32 norms, softmax, loss and residual stream, and the casts).
- ``hf-trace``: the exact HuggingFace module the profiler measured, traced on the meta device with
  ``perfforge.from_torch`` (needs torch and transformers): every kernel that implementation launches,
  unfused GELU, dropout and dtype casts included. A run measured under ``torch.autocast`` (the profiler's
  fp16/bf16 training) is traced under autocast too: fp32 parameters, the casts autocast inserts, and the
  ops it runs in fp32.
A variant that cannot run says why; the harness reports it as not run, never as a number.
"""

from __future__ import annotations

import os
from typing import Any

from perfforge.api import resolve_workload
from perfforge.profiling.models import BERT_SIZES, GPT2_SIZES
from perfforge.workload.graph import Workload

VARIANTS = ("zoo", "zoo-unfused", "hf-trace")
# The same architectures the profiler built and measured (stdlib-only import: no torch here)
_GPT2, _BERT = GPT2_SIZES, BERT_SIZES


class VariantUnavailable(RuntimeError):
    """This variant cannot build the workload here (missing library, unsupported model)."""


def build(variant: str, model: str, *, mode: str, batch: int, seq: int | None, dtype: str,
          head: str | None = None, dropout: float = 0.0, amp: str | None = None,
          attention: str | None = None, fuse_bn_act: bool = False) -> Workload:
    """``dropout``: the measured training run's dropout probability (the zoo variants add its kernels; the
    traced HF module carries its own). ``amp``: the run's mixed-precision mode as the profiler records it
    ("autocast", "autocast+gradscaler", "cast" or "none"); every variant follows it. ``attention``: the run's
    HF ``attn_implementation`` (None or "eager": eager attention; "sdpa": one fused kernel)."""
    autocast = bool(amp and amp.startswith("autocast"))
    if variant in ("zoo", "zoo-unfused"):
        impl = "fused" if variant == "zoo" else "sdpa" if attention == "sdpa" else "unfused"
        return resolve_workload(model, mode=mode, batch=batch, seq=seq, dtype=dtype, attention_impl=impl,
                                dropout=dropout, amp=autocast, head=head, fuse_bn_act=fuse_bn_act)
    if variant == "hf-trace":
        return _hf_trace(model, mode=mode, batch=batch, seq=seq or 128, dtype=dtype, head=head, autocast=autocast)
    raise ValueError(f"unknown variant '{variant}' (known: {', '.join(VARIANTS)})")


def _hf_trace(model: str, *, mode: str, batch: int, seq: int, dtype: str, head: str | None,
              autocast: bool = False) -> Workload:
    if model not in _GPT2 and model not in _BERT:
        raise VariantUnavailable(f"hf-trace covers {', '.join([*_GPT2, *_BERT])}; not {model}")
    try:
        import torch
        import transformers as tf
    except ImportError as exc:
        raise VariantUnavailable(f"hf-trace needs torch and transformers ({exc.name} not installed)") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train = mode == "train"
    if model in _GPT2:
        n_layer, n_embd, n_head = _GPT2[model]
        cfg: Any = tf.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=50257, n_positions=1024)
        cls = tf.GPT2LMHeadModel if (head or "lm") == "lm" else tf.GPT2Model
    else:
        layers, hidden, heads, inter = _BERT[model]
        cfg = tf.BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                            intermediate_size=inter, vocab_size=30522, max_position_embeddings=512)
        cls = {"mlm": tf.BertForMaskedLM, "pretraining": tf.BertForPreTraining}.get(head or "", tf.BertModel)
    cfg._attn_implementation = "sdpa"  # what the profiler's runs used (recorded in their `extra`)
    with torch.device("meta"):
        module = cls(cfg)
    module.train(train)
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    # the loss inside the module's forward where HF computes one from `labels` alone (not BertForPreTraining's,
    # which also needs next-sentence labels)
    kwargs = {"labels": ids} if train and cls not in (tf.BertModel, tf.BertForPreTraining) else {}
    from perfforge.api import from_torch

    try:
        precision = {"amp": dtype} if autocast else {"dtype": dtype}
        return from_torch(module, ids, name=f"{model} (hf-trace)", batch=batch, seq=seq, example_kwargs=kwargs,
                          **precision)
    except RuntimeError as exc:  # a data-dependent branch (e.g. .item()) cannot run on the meta device
        raise VariantUnavailable(f"tracing {model} on the meta device failed: {str(exc)[:120]}") from None
