"""NeuSight's end-to-end labels re-measured the way NeuSight's own harness measures them.

perfforge's breakdown runs (``perfforge.profiling.op_breakdown``) time NeuSight's benchmark configurations with
perfforge's protocol: dropout 0, the bare ``BertModel``, a gradient of ones instead of a loss, the median of
three calls. NeuSight's labels (``../shared/data/neusight/labels``) came from its ``measure_e2e``
(``neusight/Tracing/trace.py``, trsharm25/NeuSight @ 2e9d3fb), which differs in ways that move the number:

* models from their HF configs with the configs' dropout (0.1), built as ``AutoModelForPreTraining`` (BERT) or
  ``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM`` for training, ``AutoModelForSequenceClassification``
  for BERT inference; eager attention; every input token id 1;
* a cross-entropy over the logits against the input ids, computed between the timed forward and the timed
  backward (its forward is in neither);
* 25 iterations, each after ``gc.collect()`` and ``torch.cuda.empty_cache()`` (so every forward re-allocates
  from the driver), and the label is the mean of the 5 fastest forwards plus the mean of the 5 fastest
  backwards;
* for Switch Transformers, NeuSight's per-node traces ran its replacement of the sparse MLP (``set_moe``: every
  expert on a zero-padded buffer of ``batch x expert_capacity`` rows whatever the router chose), but its
  end-to-end labels ran transformers' own layer: ``measure_e2e`` runs before ``set_moe`` patches the class, one
  configuration per process (``scripts/asplos/collect_label.py``). Because every token id is 1 and Switch has
  no absolute positions, that layer sends all tokens to one expert. This group runs both (``experts``: "padded",
  "hf"); the "hf" cases use today's transformers, whose router (5.17) does not apply the capacity.

This group (``perfforge profile --only neusight-e2e``) runs those configurations that way, on PyTorch of today,
and records NeuSight's statistic as ``latency_s`` together with the medians and a warm-allocator pass (no
``empty_cache``), so that the gap between perfforge's own runs and NeuSight's labels can be split into protocol,
setup and software. The padded-expert layer here is written from NeuSight's description of it, not copied.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from perfforge.profiling.op_breakdown import NEUSIGHT_NAMES, _transformers, hf_config, neusight_label
from perfforge.workload.models.switch import SwitchConfig
from perfforge.workload.zoo import SWITCH_XL


def _hf_switch(cfg: SwitchConfig) -> dict[str, Any]:
    """transformers' ``SwitchTransformersConfig`` arguments for a zoo Switch config."""
    return dict(num_layers=cfg.layers, num_decoder_layers=cfg.layers, d_model=cfg.d_model, d_ff=cfg.d_ff,
                num_heads=cfg.heads, d_kv=cfg.d_kv, num_experts=cfg.experts, expert_capacity=cfg.expert_capacity,
                encoder_sparse_step=cfg.sparse_step, decoder_sparse_step=cfg.sparse_step, vocab_size=cfg.vocab)


# NeuSight's Switch config (switchxl4: the zoo's `switch-xl`) and a two-layer one for CPU tests
_SWITCH_ARCH = {"switch-xl": _hf_switch(SWITCH_XL),
                "tiny-switch": _hf_switch(replace(SWITCH_XL, name="tiny-switch", layers=2, d_model=64, d_ff=128,
                                                  heads=4, d_kv=16, expert_capacity=8, vocab=256))}
NAMES = {**NEUSIGHT_NAMES, "switch-xl": "switchxl4"}


@dataclass(frozen=True)
class E2ECase:
    """One label configuration. ``experts``: "padded" (NeuSight's layer) or "hf" (transformers' own)."""

    model: str
    mode: str  # "train" | "inference"
    batch: int
    seq: int
    experts: str = "padded"


_DENSE_TRAIN = (("bert-large", 2, 512), ("bert-large", 8, 512), ("gpt2-large", 1, 1024), ("gpt2-large", 4, 1024),
                ("opt-1.3b", 1, 2048), ("opt-1.3b", 2, 2048), ("gpt3-xl-neusight", 1, 2048),
                ("gpt3-2.7b", 1, 2048))
# NeuSight's H100 label set: its dense training labels (perfforge's breakdown runs, dropout 0 and no loss, were
# 0.79-0.96x of them; the inference ones 0.94-1.01x) and all four Switch labels, then the same with transformers'
# own layer
STANDARD = (tuple(E2ECase(m, "train", b, s) for m, b, s in _DENSE_TRAIN)
            + tuple(E2ECase("switch-xl", mode, b, 512) for mode in ("train", "inference") for b in (1, 2))
            + tuple(E2ECase("switch-xl", mode, b, 512, "hf") for mode in ("train", "inference") for b in (1, 2)))
SUITES = {"tiny": (E2ECase("tiny-gpt2", "train", 1, 32), E2ECase("tiny-bert", "train", 2, 32),
                   E2ECase("tiny-bert", "inference", 2, 32), E2ECase("tiny-switch", "train", 2, 32),
                   E2ECase("tiny-switch", "inference", 2, 32, "hf")),
          "standard": STANDARD}
# (iterations as NeuSight runs them, how many fastest it averages, warm-allocator iterations) per suite
TIMING = {"tiny": (3, 2, 2), "standard": (25, 5, 5)}


def _padded_sparse_mlp(tuple_return: bool) -> Callable[[Any, Any], Any]:
    """A forward for transformers' ``SwitchTransformersSparseMLP`` that runs every expert on a zero-padded
    ``batch x expert_capacity`` buffer holding the tokens routed to it, as NeuSight's ``set_moe`` does."""
    import torch

    def forward(self: Any, hidden: Any) -> Any:
        # top-1 routing with the capacity mask applied here: transformers' routers differ across versions in
        # what they return and whether they mask (5.17's let all 512 identical tokens through to one expert)
        router, cap = self.router, self.router.expert_capacity
        logits = router.classifier(hidden.to(router.classifier.weight.dtype))
        probs_all = torch.softmax(logits, dim=-1).to(hidden.dtype)
        onehot = torch.nn.functional.one_hot(torch.argmax(probs_all, dim=-1), router.num_experts)
        dispatch = onehot * (torch.cumsum(onehot, dim=-2) <= cap)
        probs = probs_all.max(dim=-1).values.unsqueeze(-1)
        batch, _, width = hidden.shape
        out = hidden.clone()
        buf = torch.zeros(batch * cap, width, dtype=hidden.dtype, device=hidden.device)
        for idx in range(router.num_experts):
            chosen = dispatch[:, :, idx].bool()
            n = int(torch.count_nonzero(chosen))
            buf[:n] = hidden[chosen]
            buf = self.experts[f"expert_{idx}"](buf)
            out[chosen] = buf[:n]
        out = probs * out
        return (out, (logits, torch.argmax(dispatch, dim=-1))) if tuple_return else out

    return forward


def _patch_switch(padded: bool) -> None:
    """Install (or remove) the padded-expert forward on transformers' Switch sparse MLP."""
    import inspect

    from transformers.models.switch_transformers import modeling_switch_transformers as sw

    cls = sw.SwitchTransformersSparseMLP
    original = cls.__dict__.get("_perfforge_original") or cls.forward
    cls._perfforge_original = original
    if not padded:
        cls.forward = original
        return
    # transformers 4.x returns (hidden, (router_logits, expert_index)); 5.x records the router output elsewhere
    tuple_return = "return hidden_states, (" in inspect.getsource(original)
    cls.forward = _padded_sparse_mlp(tuple_return)


def build(case: E2ECase, dev: Any) -> tuple[Any, Callable[[Any], dict[str, Any]], Any]:
    """The model as NeuSight's ``get_model`` builds it (configs' default dropout, eager attention), its inputs
    (all token ids 1) and the logits getter."""
    import torch

    tf = _transformers()
    train = case.mode == "train"
    ids = torch.ones(case.batch, case.seq, dtype=torch.int64, device=dev)
    inputs: dict[str, Any] = {"input_ids": ids}
    if case.model in _SWITCH_ARCH:
        cfg = tf.SwitchTransformersConfig(**_SWITCH_ARCH[case.model], use_cache=False)
        cls = tf.SwitchTransformersForConditionalGeneration
        # NeuSight passes [ids, ids, ids] positionally: input_ids, attention_mask, decoder_input_ids
        inputs.update(attention_mask=ids, decoder_input_ids=ids)
        _patch_switch(case.experts == "padded")
    else:
        cfg, family, _ = hf_config(case.model, None)   # the config classes' default dropout, as NeuSight ran
        cls = {"gpt2": tf.GPT2LMHeadModel, "opt": tf.OPTForCausalLM,
               "bert": tf.BertForPreTraining if train else tf.BertForSequenceClassification}[family]
    with torch.device(dev):
        model = cls._from_config(cfg, attn_implementation="eager")
    model.train(train)

    def logits(out: Any) -> Any:
        return out.prediction_logits if hasattr(out, "prediction_logits") else out.logits

    return model, logits, inputs


def _fastest_mean(xs: list[float], k: int) -> float:
    return sum(sorted(xs)[:k]) / min(k, len(xs))


def measure_case(case: E2ECase, dev: Any, iterations: int, fastest: int, warm: int) -> dict[str, Any]:
    """Forward and backward times (seconds) of ``case`` in NeuSight's protocol, then ``warm`` more iterations
    without emptying the allocator's cache."""
    import torch

    cuda = getattr(dev, "type", "cpu") == "cuda"
    model, logits, inputs = build(case, dev)
    ids = inputs["input_ids"]

    def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
        if not cuda:
            import time

            t0 = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t0
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        return out, start.elapsed_time(end) * 1e-3

    def once(empty: bool) -> tuple[float, float]:
        if empty:
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        if case.mode != "train":
            with torch.no_grad():
                _, fw = timed(lambda: model(**inputs))
            return fw, 0.0
        out, fw = timed(lambda: model(**inputs))
        lg = logits(out)
        loss = torch.nn.functional.cross_entropy(lg.view(-1, lg.size(-1)), ids.view(-1))
        del out, lg
        _, bw = timed(loss.backward)   # grads accumulate across iterations, as in NeuSight's loop
        return fw, bw

    cold = [once(True) for _ in range(iterations)]
    hot = [once(False) for _ in range(warm)]
    fws, bws = [c[0] for c in cold], [c[1] for c in cold]
    res = {"fw_s": _fastest_mean(fws, fastest), "bw_s": _fastest_mean(bws, fastest),
           "fw_median_s": statistics.median(fws), "bw_median_s": statistics.median(bws),
           "e2e_median_s": statistics.median(f + b for f, b in cold),
           "warm_e2e_median_s": statistics.median(f + b for f, b in hot) if hot else None,
           "parameters": sum(p.numel() for p in model.parameters()), "model_class": type(model).__name__,
           "iterations": iterations, "fastest": fastest, "warm_iterations": warm}
    res["e2e_s"] = res["fw_s"] + res["bw_s"]
    return res


def case_key(case: E2ECase) -> tuple[str, dict[str, Any]]:
    """The measurement key and params of one case (FP32)."""
    from perfforge.profiling.records import make_key

    params: dict[str, Any] = {"model": case.model, "mode": case.mode, "batch": case.batch, "seq": case.seq,
                              "attention": "eager", "dropout": 0.1, "harness": "neusight"}
    if case.mode == "train":
        params["exclude_optimizer"] = True
        params["loss"] = "cross_entropy_untimed"
    if case.model in _SWITCH_ARCH:
        params["experts"] = case.experts
    if case.model in NAMES:
        params["neusight_label"] = neusight_label(NAMES[case.model], case.mode, case.seq, case.batch)
    return make_key("model", f"{case.model}_{case.mode}_neusight", "fp32", params), params


def measure_records(suite: str, dev: Any, base: Any, done: set[str], emit: Callable[[Any], None],
                    say: Callable[[str], None]) -> int:
    """``perfforge profile --only neusight-e2e``: the suite's cases as measurement records (resumable by key)."""
    import torch

    from perfforge.profiling.kernels import set_precision_flags
    from perfforge.profiling.records import group_on_device, utc_now_iso

    cuda = group_on_device("neusight-e2e", suite, SUITES, dev, needs="runs 0.3-2.9B-parameter FP32 transformers",
                           tiny="runs two-layer models")
    set_precision_flags("fp32")   # TF32 off, as NeuSight measured
    iterations, fastest, warm = TIMING[suite]
    ran = 0
    try:
        for case in SUITES[suite]:
            key, params = case_key(case)
            if key in done:
                continue
            rec = replace(base, key=key, kind="model", op=f"{case.model}_{case.mode}", params=params, dtype="fp32",
                          group="neusight-e2e", timer="cuda_event" if cuda else "wall", l2_flush=False,
                          repeats=iterations, warmup=0, date=utc_now_iso())
            try:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(dev)
                res = measure_case(case, dev, iterations, fastest, warm)
                rec = replace(rec, latency_s=res["e2e_s"], throughput_per_s=case.batch / res["e2e_s"],
                              peak_memory_bytes=int(torch.cuda.max_memory_allocated(dev)) if cuda else None,
                              extra={**res, "timing": "NeuSight's measure_e2e: mean of the 5 fastest of 25 "
                                     "forwards + the same of the backwards, each iteration after gc.collect and "
                                     "torch.cuda.empty_cache; the loss's forward untimed"})
                say(f"neusight-e2e {case.model} {case.mode} b={case.batch} s={case.seq} {case.experts}: "
                    f"{res['e2e_s'] * 1e3:.2f} ms (fw {res['fw_s'] * 1e3:.2f}, bw {res['bw_s'] * 1e3:.2f}; median "
                    f"{res['e2e_median_s'] * 1e3:.2f}, warm allocator {(res['warm_e2e_median_s'] or 0) * 1e3:.2f})")
            except Exception as exc:  # noqa: BLE001 - recorded; the other cases still run
                rec = replace(rec, error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
                say(f"neusight-e2e {case.model} {case.mode} b={case.batch}: {rec.error}")
            gc.collect()   # the case's model is unreachable once measure_case returns
            if cuda:
                torch.cuda.empty_cache()
            emit(rec)
            ran += 1
    finally:
        if any(c.model in _SWITCH_ARCH for c in SUITES[suite]):
            try:
                _patch_switch(False)
            except ImportError:
                pass
    return ran
