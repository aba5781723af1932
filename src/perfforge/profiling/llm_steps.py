"""Measure LLM serving iterations: one prefill or one decode step of a whole decoder, on the local GPU.

The serving simulator's unit of work is an iteration: a forward pass of every layer over a batch, a prefill
(P new tokens per request) or a decode (one new token per request attending to a KV cache of C tokens).
This module builds a Llama-architecture decoder straight from a perfforge zoo config (RMSNorm, rotary
embeddings, grouped-query attention through ``scaled_dot_product_attention``, SwiGLU MLP, no biases),
with random weights, a preallocated KV cache, and the LM head applied to the last position of each
sequence, as serving engines do. No transformers, no download.

Each case records two times:

* ``latency_s``: the sum of the iteration's GPU kernel durations from the PyTorch profiler: what the GPU
  spends when kernels run back to back, as in a CUDA-graph replay (vLLM captures decode steps this way);
* ``extra.wall_s``: CUDA events around the eager call, which on small batches also counts Python's
  op-by-op launch cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

# (batch, prompt tokens) and (batch, context tokens); a case's KV cache is allocated for it alone
PREFILL_CASES = {"tiny": [(1, 16)], "smoke": [(1, 512)],
                 "standard": [(1, 128), (1, 512), (1, 2048), (4, 512), (8, 1024)]}
DECODE_CASES = {"tiny": [(2, 16)], "smoke": [(8, 512)],
                "standard": [(1, 512), (1, 2048), (8, 512), (8, 2048), (32, 512), (32, 2048), (128, 512)]}
SUITE_MODELS = {"tiny": ("tiny-llama",), "smoke": ("llama-2-7b",), "standard": ("llama-2-7b", "llama-3-8b")}
# a two-layer decoder for tests and CPU smoke runs (not a zoo model)
TINY_LLAMA = SimpleNamespace(hidden=64, heads=4, n_kv_heads=2, d_head=16, ffn=128, layers=2, vocab=100)


def build_decoder(cfg: Any, dev: Any, dtype: Any, max_len: int) -> Any:
    """A Llama-style decoder with random weights; ``model.allocate(batch, length)`` sizes its KV cache."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    heads, kv_heads, hd = cfg.heads, cfg.n_kv_heads, cfg.d_head
    dev_type = getattr(dev, "type", str(dev))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.RMSNorm(cfg.hidden, eps=1e-5)
            self.qkv = nn.Linear(cfg.hidden, (heads + 2 * kv_heads) * hd, bias=False)
            self.out = nn.Linear(heads * hd, cfg.hidden, bias=False)
            self.norm2 = nn.RMSNorm(cfg.hidden, eps=1e-5)
            self.up = nn.Linear(cfg.hidden, 2 * cfg.ffn, bias=False)     # gate and up, fused
            self.down = nn.Linear(cfg.ffn, cfg.hidden, bias=False)
            self.k_cache: Any = None
            self.v_cache: Any = None

        def forward(self, x: Any, cos: Any, sin: Any, start: int) -> Any:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).split([heads * hd, kv_heads * hd, kv_heads * hd], dim=-1)
            q = _rotate(q.view(b, t, heads, hd).transpose(1, 2), cos, sin)
            k = _rotate(k.view(b, t, kv_heads, hd).transpose(1, 2), cos, sin)
            self.k_cache[:b, :, start:start + t] = k
            self.v_cache[:b, :, start:start + t] = v.view(b, t, kv_heads, hd).transpose(1, 2)
            keys, values = self.k_cache[:b, :, :start + t], self.v_cache[:b, :, :start + t]
            a = F.scaled_dot_product_attention(q, keys, values, is_causal=t > 1 and start == 0,
                                               enable_gqa=kv_heads != heads)
            x = x + self.out(a.transpose(1, 2).reshape(b, t, heads * hd))
            gate, up = self.up(self.norm2(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(gate) * up)

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
            self.layers = nn.ModuleList(Layer() for _ in range(cfg.layers))
            self.norm = nn.RMSNorm(cfg.hidden, eps=1e-5)
            self.head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
            inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
            ang = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
            self.register_buffer("cos", ang.cos().to(dtype))
            self.register_buffer("sin", ang.sin().to(dtype))

        def allocate(self, batch: int, length: int) -> None:
            for layer in self.layers:
                layer.k_cache = layer.v_cache = None
            if dev_type == "cuda":
                torch.cuda.empty_cache()
            for layer in self.layers:
                layer.k_cache = torch.zeros(batch, kv_heads, length, hd, dtype=dtype, device=self.cos.device)
                layer.v_cache = torch.zeros(batch, kv_heads, length, hd, dtype=dtype, device=self.cos.device)

        def forward(self, ids: Any, start: int) -> Any:
            t = ids.shape[1]
            cos, sin = self.cos[start:start + t], self.sin[start:start + t]
            x = self.embed(ids)
            for layer in self.layers:
                x = layer(x, cos, sin, start)
            return self.head(self.norm(x[:, -1]))   # logits of the last position only

    with torch.device(dev):
        model = Decoder().to(dtype)
    return model.eval()


def _rotate(x: Any, cos: Any, sin: Any) -> Any:
    """Rotary embedding on the two halves of each head (the Llama layout)."""
    import torch

    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[None, None, :, :], sin[None, None, :, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def measure(model_id: str, suite: str, dev: Any, dtype_name: str = "fp16",
            emit: Callable[[dict[str, Any]], None] | None = None,
            say: Callable[[str], None] = print, cfg: Any = None,
            only: Iterable[tuple[str, int, int]] | None = None) -> list[dict[str, Any]]:
    """Prefill and decode iterations of ``model_id`` (a zoo decoder, or ``cfg`` when given); one dict per case.
    ``only``: the (phase, batch, length) cases to run (default: the suite's)."""
    import torch

    from perfforge.profiling.kernels import torch_dtype
    from perfforge.profiling.timing import kernel_time_s, time_callable
    from perfforge.workload.zoo import MODELS

    cfg = cfg or (TINY_LLAMA if model_id == "tiny-llama" else MODELS.get(model_id).config)
    prefill, decode = PREFILL_CASES[suite], DECODE_CASES[suite]
    max_len = max(length for _, length in (*prefill, *decode)) + 1
    dtype = torch_dtype(dtype_name)
    model = build_decoder(cfg, dev, dtype, max_len)
    out: list[dict[str, Any]] = []
    cuda = dev.type == "cuda"
    cases: list[tuple[str, int, int]] = [("prefill", b, p) for b, p in prefill] + [("decode", b, c) for b, c in decode]
    if only is not None:
        keep = set(only)
        cases = [c for c in cases if c in keep]
    for phase, batch, length in cases:
        if phase == "prefill":
            ids = torch.randint(0, cfg.vocab, (batch, length), device=dev)

            def fn(ids: Any = ids) -> Any:
                with torch.inference_mode():
                    return model(ids, 0)
        else:
            ids = torch.randint(0, cfg.vocab, (batch, 1), device=dev)

            def fn(ids: Any = ids, start: int = length) -> Any:
                with torch.inference_mode():
                    return model(ids, start)
        model.allocate(batch, length + 1)
        rec: dict[str, Any] = {"op": f"llm_{phase}", "model": model_id, "batch": batch, "dtype": dtype_name,
                               ("prompt" if phase == "prefill" else "context"): length}
        try:
            rec["wall_s"] = time_callable(fn, device=dev, warmup=1, repeats=5, max_time_s=60.0).median_s
            rec["latency_s"] = kernel_time_s(fn) if cuda else rec["wall_s"]
            rec["timer"] = "cuda_kernels" if cuda else "wall"
        except Exception as exc:  # noqa: BLE001 - recorded, the other cases still run
            rec["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        out.append(rec)
        if emit:
            emit(rec)
        timing = (f"{rec['latency_s'] * 1e3:.3f} ms kernels, {rec['wall_s'] * 1e3:.3f} ms wall" if cuda
                  else f"{rec['wall_s'] * 1e3:.3f} ms wall") if "error" not in rec else rec["error"]
        say(f"{rec['op']} b={batch} {'p' if phase == 'prefill' else 'c'}={length}: {timing}")
    return out


def case_key(model_id: str, phase: str, batch: int, length: int, dtype: str) -> tuple[str, dict[str, Any]]:
    """The measurement key and params of one iteration case."""
    from perfforge.profiling.records import make_key

    params = {"model": model_id, "batch": batch, ("prompt" if phase == "prefill" else "context"): length}
    return make_key("model", f"llm_{phase}", dtype, params), params


def measure_records(suite: str, dev: Any, base: Any, done: set[str], emit: Callable[[Any], None],
                    say: Callable[[str], None]) -> int:
    """``perfforge profile --only llm``: the suite's iterations as measurement records (resumable by key)."""
    from perfforge.profiling.records import group_on_device, utc_now_iso

    cuda = group_on_device("llm", suite, SUITE_MODELS, dev, needs="builds 7-8B-parameter decoders",
                           tiny="measures a two-layer decoder")
    dtype = "fp16" if cuda else "fp32"
    all_cases = [("prefill", b, p) for b, p in PREFILL_CASES[suite]] + [("decode", b, c) for b, c in DECODE_CASES[suite]]
    ran = 0
    for model_id in SUITE_MODELS[suite]:
        todo = [c for c in all_cases if case_key(model_id, *c, dtype)[0] not in done]
        if not todo:
            say(f"llm {model_id}: already measured")
            continue

        def emit_one(rec: dict[str, Any], model_id: str = model_id) -> None:
            phase = rec["op"].removeprefix("llm_")
            key, params = case_key(model_id, phase, rec["batch"], rec.get("prompt", rec.get("context")), dtype)
            m = replace(base, key=key, kind="model", op=rec["op"], params=params, dtype=dtype, group="llm",
                        timer=rec.get("timer", "wall"), l2_flush=False, latency_s=rec.get("latency_s"),
                        repeats=5, warmup=1, error=rec.get("error"),
                        extra={"wall_s": rec.get("wall_s"), "timing": "sum of kernel durations"
                               if rec.get("timer") == "cuda_kernels" else "wall clock"}, date=utc_now_iso())
            emit(m)

        ran += len(measure(model_id, suite, dev, dtype, emit=emit_one, say=say, only=todo))
    return ran
