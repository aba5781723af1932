"""Operator profiles in Vidur's CSV format: read them into an ``OperatorTable``, or write one out.

Vidur's profiling writes ``mlp.csv`` (token-indexed ops of one layer, ms, one row per ``num_tokens`` and
tensor-parallel degree, with the model's dimensions as columns), ``attention.csv`` (``attn_prefill`` by
``kv_cache_size`` and ``prefill_chunk_size``; ``attn_decode`` by ``batch_size`` and ``kv_cache_size``),
``all_reduce.csv`` and ``send_recv.csv`` (NCCL by message ``size`` in bytes, ``num_workers`` and
``devices_per_node``). Every time column is ``time_stats.<op>.{min,max,mean,median,std}``; the median is used.
Files may be plain or gzipped. A file that is missing is filled from perfforge's analytical model, and the
table's ``source`` says so; no op is silently zero.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from perfforge.core.errors import ConfigError
from perfforge.serving.optable import (
    BATCH_GRID,
    CHUNK_GRID,
    CONTEXT_GRID,
    OperatorTable,
    model_table,
)
from perfforge.workload.decoders import decoder_config
from perfforge.workload.models.transformer import TransformerConfig

MLP_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add", "emb")
_STATS = ("min", "max", "mean", "median", "std")


def _open(folder: Path, stem: str) -> list[dict[str, str]] | None:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        p = folder / name
        if p.is_file():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(p, "rt", newline="") as fh:
                return list(csv.DictReader(fh))
    return None


def _median(row: dict[str, str], op: str) -> float | None:
    v = row.get(f"time_stats.{op}.median", "")
    return float(v) * 1e-3 if v not in ("", None) else None


def _is_true(v: str) -> bool:
    return str(v).strip().lower() in ("true", "1")


def _rows_for_model(rows: list[dict[str, str]], cfg: TransformerConfig, tp: int, head_key: str) -> list[dict[str, str]]:
    out = []
    for r in rows:
        try:
            if (int(r["n_embd"]) == cfg.hidden and int(r[head_key]) == cfg.heads
                    and int(r["n_kv_head"]) == cfg.n_kv_heads and int(r["num_tensor_parallel_workers"]) == tp):
                out.append(r)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"profile row lacks or garbles a Vidur column ({exc})") from None
    return out


def _fill_grid(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray, xg: np.ndarray, yg: np.ndarray) -> np.ndarray:
    """Scattered measurements -> a rectangular table: along y within each measured x, then along x."""
    ux = np.unique(xs)
    partial = np.empty((len(ux), len(yg)))
    for i, x in enumerate(ux):
        m = xs == x
        order = np.argsort(ys[m])
        partial[i] = np.interp(yg, ys[m][order], zs[m][order])
    out = np.empty((len(xg), len(yg)))
    for j in range(len(yg)):
        out[:, j] = np.interp(xg, ux, partial[:, j])
    return out


def read_profile_dir(folder: str | Path, *, model: str, tp: int = 1, block_size: int = 16,
                     hardware: str | None = None, dtype: str = "fp16") -> OperatorTable:
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"profile directory not found: {root}")
    cfg = decoder_config(model)
    notes: list[str] = []
    token_ops: dict[str, np.ndarray] = {}
    absent: list[str] = []
    fallback = model_table(model, hardware, tp, dtype) if hardware else None

    def from_model(what: str) -> OperatorTable:
        if fallback is None:
            raise ConfigError(f"{root}: no {what} for {model} at tp={tp}; add it or give --hardware so that "
                              "perfforge's analytical model can fill it in")
        notes.append(f"{what}: analytical")
        return fallback

    mlp = _open(root, "mlp")
    # Vidur profiles dense MLPs only: a mixture of experts takes its MLP ops from perfforge's model
    rows = _rows_for_model(mlp, cfg, tp, "n_head") if mlp and not cfg.num_experts else []
    rows = [r for r in rows if int(r["n_expanded_embd"]) == cfg.ffn] if rows else rows
    if rows:
        tokens = np.array(sorted({int(r["num_tokens"]) for r in rows}), dtype=np.float64)
        by_tokens = {int(r["num_tokens"]): r for r in rows}
        for op in MLP_OPS:
            vals = [_median(by_tokens[int(t)], op) for t in tokens]
            if all(v is None for v in vals):
                absent.append(op)
                continue
            token_ops[op] = np.array([v or 0.0 for v in vals])
        notes.append(f"mlp: {root / 'mlp.csv'} ({len(tokens)} token counts)")
    else:
        fb = from_model("mlp ops")
        tokens = fb.tokens
        for op in MLP_OPS:
            if op in fb.absent:
                absent.append(op)
            else:
                token_ops[op] = fb.token_ops[op]

    def network(stem: str, coll: str, workers: int, per_node: int) -> np.ndarray | None:
        data = _open(root, stem)
        if not data:
            return None
        sel = [r for r in data if r.get("collective") == coll and int(r["num_workers"]) == workers
               and int(r["devices_per_node"]) == per_node]
        if not sel:
            return None
        size_tokens = np.array([int(r["size"]) / (cfg.hidden * 2) for r in sel])   # Vidur: 2 bytes per value
        t = np.array([_median(r, coll) for r in sel])
        order = np.argsort(size_tokens)
        notes.append(f"{coll}: {root / stem}.csv ({workers} workers, {per_node} per node)")
        return np.interp(tokens, size_tokens[order], t[order])

    for name, stem, workers, per_node, needed in (("all_reduce", "all_reduce", tp, tp, tp > 1),
                                                  ("send_recv", "send_recv", 2, 2, True)):
        got = network(stem, name, workers, per_node) if needed else None
        if got is not None:
            token_ops[name] = got
        elif not needed:
            absent.append(name)
        elif fallback is not None and name not in fallback.absent:
            token_ops[name] = np.interp(tokens, fallback.tokens, fallback.token_ops[name])
            notes.append(f"{name}: analytical")
        else:
            absent.append(name)
    if "lm_head" not in token_ops:
        absent.append("lm_head")   # Vidur does not profile the LM head
    # Vidur's format has no column for Qwen3's per-head Q/K norms or a mixture of experts' routing
    for op, present, what in (("attn_qk_norm", cfg.qk_norm, "per-head Q/K norms"),
                              ("mlp_router", cfg.num_experts, "expert routing")):
        if not present:
            absent.append(op)
        else:
            fb = from_model(what)
            token_ops[op] = np.interp(tokens, fb.tokens, fb.token_ops[op])

    attn = _open(root, "attention")
    arows = [r for r in _rows_for_model(attn, cfg, tp, "n_q_head") if int(r.get("block_size", block_size)) == block_size] \
        if attn else []
    pre = [r for r in arows if int(r["prefill_chunk_size"]) > 0]
    dec = [r for r in arows if int(r["prefill_chunk_size"]) == 0]
    if pre and dec:
        p_ctx = np.array([float(r["kv_cache_size"]) for r in pre])
        p_chunk = np.array([float(r["prefill_chunk_size"]) for r in pre])
        p_t = np.array([_median(r, "attn_prefill") for r in pre])
        d_b = np.array([float(r["batch_size"]) for r in dec])
        d_ctx = np.array([float(r["kv_cache_size"]) for r in dec])
        d_t = np.array([_median(r, "attn_decode") for r in dec])
        prefill_time = _fill_grid(p_ctx, p_chunk, p_t, CONTEXT_GRID, CHUNK_GRID)
        decode_time = _fill_grid(d_b, d_ctx, d_t, BATCH_GRID, CONTEXT_GRID)
        notes.append(f"attention: {root / 'attention.csv'} ({len(pre)} prefill, {len(dec)} decode points)")
    else:
        fb = from_model("attention")
        prefill_time, decode_time = fb.prefill_time, fb.decode_time
    return OperatorTable(tokens=tokens, token_ops=token_ops, prefill_context=CONTEXT_GRID, prefill_chunk=CHUNK_GRID,
                         prefill_time=prefill_time, decode_batch=BATCH_GRID, decode_context=CONTEXT_GRID,
                         decode_time=decode_time, source="Vidur-format profiles: " + "; ".join(notes),
                         absent=tuple(sorted(set(absent))), meta={"model": cfg.name, "tp": tp})


def _stats_cols(op: str) -> list[str]:
    return [f"time_stats.{op}.{s}" for s in _STATS]


def _stat_values(seconds: float) -> list[str]:
    ms = f"{seconds * 1e3:.6g}"
    return [ms, ms, ms, ms, "0"]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    from perfforge.core.files import write_atomic

    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    write_atomic(path, "\n".join(lines) + "\n")


def write_profile_dir(table: OperatorTable, folder: str | Path, *, model: str, tp: int = 1, block_size: int = 16,
                      max_tokens: int = 4096) -> list[Path]:
    """Write ``table`` as Vidur-format CSVs (ms) so Vidur and perfforge can run on the same operator times.
    Only shapes up to ``max_tokens`` are written (Vidur's own profiles stop at 4096 tokens)."""
    cfg = decoder_config(model)
    for op, what in (("attn_qk_norm", "per-head Q/K norms"), ("mlp_router", "expert routing")):
        if op not in table.absent:
            raise ConfigError(f"{model}: Vidur's profile format has no column for {what}; its operator table "
                              "cannot be written as Vidur profiles without losing them")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    tokens = table.tokens[table.tokens <= max_tokens]
    dims = [cfg.heads, cfg.n_kv_heads, cfg.hidden, cfg.ffn, cfg.vocab, cfg.gated]
    ops = [op for op in MLP_OPS if op not in table.absent]
    header = [c for op in ops for c in _stats_cols(op)] + ["n_head", "n_kv_head", "n_embd", "n_expanded_embd",
                                                           "vocab_size", "use_gated_mlp", "num_tokens",
                                                           "num_tensor_parallel_workers"]
    rows = []
    for n in tokens:
        vals = [v for op in ops for v in _stat_values(float(table.token_time(op, n)))]
        rows.append(vals + dims + [int(n), tp])
    written = [root / "mlp.csv"]
    _write_csv(written[0], header, rows)

    ctx = table.prefill_context[table.prefill_context <= max_tokens]
    chunks = table.prefill_chunk[table.prefill_chunk <= max_tokens]
    a_header = (_stats_cols("attn_prefill") + _stats_cols("attn_decode")
                + ["n_embd", "n_q_head", "n_kv_head", "block_size", "num_tensor_parallel_workers", "batch_size",
                   "prefill_chunk_size", "kv_cache_size", "is_prefill"])
    a_dims = [cfg.hidden, cfg.heads, cfg.n_kv_heads, block_size, tp]
    a_rows: list[list[object]] = []
    for k in ctx:
        for c in chunks:
            if k + c > max_tokens:
                continue
            t = float(table.prefill_attention(np.array([k]), np.array([c]))[0])
            a_rows.append(_stat_values(t) + ["", "", "", "", ""] + a_dims + [1, int(c), int(k), True])
    for b in table.decode_batch[table.decode_batch <= 512]:
        for k in ctx:
            t = float(table.decode_attention(np.array([b]), np.array([k]))[0])
            a_rows.append(["", "", "", "", ""] + _stat_values(t) + a_dims + [int(b), 0, int(k), False])
    written.append(root / "attention.csv")
    _write_csv(written[-1], a_header, a_rows)

    for name, workers, per_node in (("all_reduce", tp, tp), ("send_recv", 2, 2)):
        if name in table.absent:
            continue
        n_header = [""] + _stats_cols(name) + ["rank", "num_workers", "size", "collective", "devices_per_node",
                                               "max_devices_per_node"]
        n_rows = [[i] + _stat_values(float(table.token_time(name, n))) +
                  [0, workers, int(n * cfg.hidden * 2), name, per_node, 8] for i, n in enumerate(tokens)]
        written.append(root / f"{name}.csv")
        _write_csv(written[-1], n_header, n_rows)
    return written
