"""Whole-model cases: ResNet-50 (torchvision), GPT-2 and BERT (transformers), random init.

No weights are downloaded: models are built from configs written here, directly on the target
device. A missing library becomes a recorded error ("torchvision not installed"), not a crash.
Inference models are cached between consecutive cases of the same model and dtype.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any

from perfforge.profiling.kernels import torch_dtype
from perfforge.profiling.timing import Case, TimingPlan

GPT2_SIZES = {"gpt2": (12, 768, 12), "gpt2-medium": (24, 1024, 16), "gpt2-large": (36, 1280, 20)}
BERT_SIZES = {"bert-base": (12, 768, 12, 3072), "bert-large": (24, 1024, 16, 4096)}
MODEL_PLANS = {"tiny": TimingPlan(warmup=1, repeats=3, max_time_s=0.5),
               "smoke": TimingPlan(warmup=3, repeats=5, max_time_s=3.0),
               "standard": TimingPlan(warmup=3, repeats=10, max_time_s=5.0)}

Step = tuple[Callable[[], object], dict[str, Any]]


class MissingDependency(RuntimeError):
    """An optional library (torchvision, transformers) is not installed."""


_CACHE: dict[str, Any] = {}


def _missing(lib: str, exc: ImportError) -> MissingDependency:
    if getattr(exc, "name", None) == lib:
        return MissingDependency(f"{lib} not installed")
    return MissingDependency(f"{lib} import failed: {exc}")


def release() -> None:
    """Drop the cached inference model and return memory to the device."""
    _CACHE.clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except (ImportError, RuntimeError):  # no torch, or a sticky CUDA error
        pass


def _build(model_id: str, head: str, dev: Any) -> Any:
    import torch

    if model_id == "tiny-mlp":
        with torch.device(dev):
            return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(),
                                       torch.nn.Linear(256, 10))
    if model_id == "resnet50":
        try:
            from torchvision.models import resnet50
        except ImportError as exc:
            raise _missing("torchvision", exc) from None
        with torch.device(dev):
            return resnet50(weights=None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers as tf
    except ImportError as exc:
        raise _missing("transformers", exc) from None
    if model_id in GPT2_SIZES:
        n_layer, n_embd, n_head = GPT2_SIZES[model_id]
        cfg = tf.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=50257,
                            n_positions=1024)
        cls = tf.GPT2LMHeadModel if head == "lm" else tf.GPT2Model
    elif model_id in BERT_SIZES:
        layers, hidden, heads, inter = BERT_SIZES[model_id]
        cfg = tf.BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                            intermediate_size=inter, vocab_size=30522, max_position_embeddings=512)
        cls = tf.BertForMaskedLM if head == "mlm" else tf.BertModel
    else:
        raise ValueError(f"unknown model id {model_id!r}")
    with torch.device(dev):
        return cls(cfg)


def _inputs(model_id: str, batch: int, seq: int, image: int, dev: Any, dtype: Any,
            channels_last: bool) -> tuple[Any, Callable[[Any, Any], Any]]:
    """Random inputs plus ``forward(model, inputs) -> (output, loss)`` for the model family."""
    import torch
    import torch.nn.functional as F

    if model_id == "tiny-mlp":
        x = torch.randn(batch, 64, device=dev, dtype=dtype)
        y = torch.randint(0, 10, (batch,), device=dev)
        return (x, y), lambda m, xy: F.cross_entropy(m(xy[0]).float(), xy[1])
    if model_id == "resnet50":
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.randn(batch, 3, image, image, device=dev, dtype=dtype).contiguous(memory_format=fmt)
        y = torch.randint(0, 1000, (batch,), device=dev)
        return (x, y), lambda m, xy: F.cross_entropy(m(xy[0]).float(), xy[1])
    vocab = 50257 if model_id in GPT2_SIZES else 30522
    ids = torch.randint(0, vocab, (batch, seq), device=dev)
    kw = {"use_cache": False} if model_id in GPT2_SIZES else {}

    def fwd(m: Any, xy: Any) -> Any:
        out = m(input_ids=xy[0], labels=xy[1], **kw) if xy[1] is not None else m(input_ids=xy[0], **kw)
        return out.loss if xy[1] is not None else out

    return (ids, ids), fwd


def _setup(p: dict[str, Any], dtype: str) -> Callable[[Any], Step]:
    def setup(dev: Any) -> Step:
        import torch

        model_id, mode = p["model"], p["mode"]
        seq, image = p.get("seq", 0), p.get("image_size", 224)
        cl = bool(p.get("channels_last", False))
        fmt = torch.channels_last if cl else torch.contiguous_format
        low = dtype in ("fp16", "bf16")
        if mode == "inference":
            ck = f"{model_id}/{p.get('head')}/{dtype}/{dev}"
            if ck not in _CACHE:
                release()
                model = _build(model_id, p.get("head", ""), dev)
                _CACHE[ck] = model.to(dtype=torch_dtype(dtype), memory_format=fmt).eval()
            model = _CACHE[ck]
            (x, _), fwd = _inputs(model_id, p["batch"], seq, image, dev, torch_dtype(dtype), cl)
            if model_id in ("tiny-mlp", "resnet50"):
                return (lambda: _infer(model, x)), {}
            extra = {"attn_implementation": getattr(model.config, "_attn_implementation", None)}
            return (lambda: _infer_hf(model, x, fwd)), extra
        release()
        model = _build(model_id, p.get("head", ""), dev).to(memory_format=fmt).train()
        inputs, fwd = _inputs(model_id, p["batch"], seq, image, dev, torch.float32, cl)
        opt: Any
        if p["optimizer"] == "sgd_momentum":
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
        scaler = torch.amp.GradScaler(dev.type, enabled=dtype == "fp16")
        ac_dtype = torch_dtype(dtype)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=ac_dtype, enabled=low):
                loss = fwd(model, inputs)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        extra = {"parameters": sum(t.numel() for t in model.parameters())}
        if hasattr(model, "config"):
            extra["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        return step, extra

    return setup


def _infer(model: Any, x: Any) -> Any:
    import torch

    with torch.inference_mode():
        return model(x)


def _infer_hf(model: Any, ids: Any, fwd: Callable[[Any, Any], Any]) -> Any:
    import torch

    with torch.inference_mode():
        return fwd(model, (ids, None))


def _model_case(suite: str, dtype: str, **params: Any) -> Case:
    p = {k: v for k, v in params.items() if v is not None}
    if p["mode"] == "train":
        p["amp"] = {"fp16": "autocast+gradscaler", "bf16": "autocast"}.get(dtype, "none")
    else:
        p["amp"] = "cast" if dtype in ("fp16", "bf16") else "none"
    return Case(kind="model", group="models", op=f"{p['model']}_{p['mode']}", dtype=dtype,
                params=p, setup=_setup(p, dtype), samples=p["batch"], l2_flush=False,
                plan=MODEL_PLANS[suite])


def _resnet(suite: str, mode: str, dtype: str, batch: int, image: int = 224, channels_last: bool = True) -> Case:
    opt = "sgd_momentum" if mode == "train" else None
    return _model_case(suite, dtype, model="resnet50", mode=mode, batch=batch, image_size=image,
                       channels_last=channels_last, optimizer=opt)


def layout_cases(suite: str = "standard") -> list[Case]:
    """ResNet-50 training at batch 256 in NCHW and NHWC (channels_last) for fp32, tf32, fp16 and bf16: NVIDIA's
    published DGX recipe trains AMP in NHWC but TF32/FP32 in the default NCHW (DeepLearningExamples
    PyTorch/Classification/ConvNets/configs.yml), and the layout changes which convolution kernels run."""
    return [_resnet(suite, "train", dt, 256, channels_last=cl)
            for dt in ("tf32", "fp16", "fp32", "bf16") for cl in (False, True)]


def _hf(suite: str, model: str, mode: str, dtype: str, batch: int, seq: int) -> Case:
    train = mode == "train"
    head = "lm" if model in GPT2_SIZES else ("mlm" if train else "none")
    return _model_case(suite, dtype, model=model, mode=mode, batch=batch, seq=seq, head=head,
                       optimizer="adamw_fused" if train else None)


def model_cases(suite: str) -> list[Case]:
    """Model cases in priority order; ResNet-50 fp16 training at batch 256 comes first."""
    if suite == "tiny":
        return [_model_case(suite, "fp32", model="tiny-mlp", mode="train", batch=8,
                            optimizer="sgd_momentum"),
                _model_case(suite, "fp32", model="tiny-mlp", mode="inference", batch=8),
                _resnet(suite, "inference", "fp32", 1, image=32),
                _hf(suite, "gpt2", "inference", "fp32", 1, 8)]
    if suite == "smoke":
        return [_resnet(suite, "train", "fp16", 64), _resnet(suite, "inference", "fp16", 64),
                _hf(suite, "gpt2", "train", "bf16", 4, 256),
                _hf(suite, "gpt2", "inference", "fp16", 8, 128)]
    cases = [_resnet(suite, "train", "fp16", b) for b in (256, 128, 64, 32)]
    cases += [_resnet(suite, "train", "bf16", 256), _resnet(suite, "train", "tf32", 128)]
    cases += [_hf(suite, m, "train", "bf16", 8, 512) for m in GPT2_SIZES]
    cases += [_hf(suite, "bert-base", "train", "bf16", 32, 128),
              _hf(suite, "bert-base", "train", "bf16", 8, 512),
              _hf(suite, "bert-large", "train", "bf16", 8, 512)]
    cases += [_resnet(suite, "inference", "fp16", b) for b in (1, 8, 32, 64, 128, 256)]
    for model in GPT2_SIZES:
        cases += [_hf(suite, model, "inference", "fp16", b, s) for b in (1, 8, 32) for s in (128, 512, 1024)]
    for model in BERT_SIZES:
        cases += [_hf(suite, model, "inference", "fp16", b, s) for b in (1, 8, 32) for s in (128, 512)]
    return cases
