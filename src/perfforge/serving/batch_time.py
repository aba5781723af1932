"""Execution time of one serving batch on one pipeline stage of a replica, from an ``OperatorTable``.

A stage runs ``layers`` transformer blocks over all the batch's tokens: token-parallel ops on the total query
tokens, prefill attention per prefilling request (its cached context and its chunk), one decode-attention
call over all decoding requests at their mean context (the shape Vidur profiles), and two tensor-parallel
all-reduces per block. The first stage also embeds the tokens, the last runs the LM head on one position per
sequence, and every stage but the last sends its activations on. Vidur 0.0.26 leaves the embedding and the
LM head out; perfforge counts them (they are a few percent of a decode step).

The token-indexed ops of a stage are summed once into one curve per stage position, so a batch costs two
interpolations plus its attention terms.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from perfforge.core.errors import ConfigError
from perfforge.serving.optable import OperatorTable

# Vidur 0.0.26 (vidur/execution_time_predictor/sklearn_execution_time_predictor.py) looks operator times up
#   tokens_x8:          at the batch's token count rounded up to a multiple of 8 (_total_num_q_tokens_rounded)
#   decode_context_x256: decode attention at the truncated mean context rounded up to 256
#                       (kv_cache_prediction_granularity)
#   prefill_context_with_chunk: prefill attention at (context including the chunk, rounded up to 256; chunk
#                       rounded up to 32), where its profiles' kv_cache_size is the context before the chunk
#   gqa_decode_overhead: +10% decode attention for grouped-query models when more than one request decodes
#                       (attention_decode_batching_overhead_fraction)
VIDUR_LOOKUPS = ("tokens_x8", "decode_context_x256", "prefill_context_with_chunk", "gqa_decode_overhead")

_PER_LAYER_TOKEN_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_qk_norm", "attn_post_proj",
                        "post_attention_layernorm", "mlp_router", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")


@dataclass(frozen=True)
class StageTimer:
    table: OperatorTable
    layers: int            # blocks on this stage
    tp: int
    pp: int
    # Vidur 0.0.26's lookup behaviours to reproduce (names in VIDUR_LOOKUPS), only to separate simulation
    # differences from lookup differences when comparing with Vidur; () is perfforge's own lookups.
    vidur_lookups: tuple[str, ...] = ()
    gqa: bool = False
    _curves: dict[int, np.ndarray] = field(init=False, repr=False, compare=False)
    _grid: list[float] = field(init=False, repr=False, compare=False)
    _lists: dict[int, list[float]] = field(init=False, repr=False, compare=False)
    _head: list[float] = field(init=False, repr=False, compare=False)
    _rows: dict[float, np.ndarray] = field(init=False, repr=False, compare=False)
    _pre: tuple[list[float], list[float], list[list[float]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.vidur_lookups) - set(VIDUR_LOOKUPS)
        if unknown:
            raise ConfigError(f"unknown Vidur lookup behaviour(s) {sorted(unknown)} (known: {', '.join(VIDUR_LOOKUPS)})")
        t = self.table
        if self.pp > 1 and "send_recv" in t.absent:
            raise ConfigError("pipeline parallelism needs send/recv times; the operator table has none")
        if self.tp > 1 and "all_reduce" in t.absent:
            raise ConfigError("tensor parallelism needs all-reduce times; the operator table has none")
        grid = t.tokens
        per_layer = sum(t.token_time(op, grid) for op in _PER_LAYER_TOKEN_OPS)
        if self.tp > 1:
            per_layer = per_layer + 2 * t.token_time("all_reduce", grid)
        curves = {}
        for stage in {0, self.pp - 1} | ({1} if self.pp > 2 else set()):
            c = self.layers * per_layer
            if stage == 0:
                c = c + t.token_time("emb", grid)
            if stage != self.pp - 1:
                c = c + t.token_time("send_recv", grid)
            curves[stage] = c
        object.__setattr__(self, "_curves", curves)
        # plain lists for scalar lookups: a bisect is ~20x cheaper than a numpy call on one element
        object.__setattr__(self, "_grid", grid.tolist())
        object.__setattr__(self, "_lists", {k: v.tolist() for k, v in curves.items()})
        object.__setattr__(self, "_head", t.token_time("lm_head", grid).tolist())
        object.__setattr__(self, "_rows", {})
        object.__setattr__(self, "_pre", (t.prefill_context.tolist(), t.prefill_chunk.tolist(), t.prefill_time.tolist()))

    def _prefill_one(self, ctx: float, chunk: float) -> float:
        """Bilinear lookup of one request's prefill attention (clamped at the grid's edges)."""
        xs, ys, z = self._pre
        x = min(max(ctx, xs[0]), xs[-1])
        y = min(max(chunk, ys[0]), ys[-1])
        i = min(bisect_right(xs, x) - 1, len(xs) - 2)
        j = min(bisect_right(ys, y) - 1, len(ys) - 2)
        tx = (x - xs[i]) / (xs[i + 1] - xs[i])
        ty = (y - ys[j]) / (ys[j + 1] - ys[j])
        return ((1 - tx) * (1 - ty) * z[i][j] + tx * (1 - ty) * z[i + 1][j]
                + (1 - tx) * ty * z[i][j + 1] + tx * ty * z[i + 1][j + 1])

    def _lookup(self, ys: list[float], x: float) -> float:
        g = self._grid
        if x <= g[0]:
            return ys[0]
        i = bisect_right(g, x) - 1
        if i >= len(g) - 1:
            i = len(g) - 2   # linear extrapolation past the grid
        return ys[i] + (ys[i + 1] - ys[i]) * (x - g[i]) / (g[i + 1] - g[i])

    def decode_one(self, batch: int, mean_context: float, stage: int = 0) -> float:
        """One decode-only iteration (the scalar path of ``decode_iterations``; same lookups)."""
        quirks = self.vidur_lookups
        tokens = float(-(-batch // 8) * 8) if "tokens_x8" in quirks else float(batch)
        if "decode_context_x256" in quirks:
            mean_context = float(-(-int(mean_context) // 256) * 256)
        attn = float(np.interp(mean_context, self.table.decode_context, self._decode_row(float(batch))))
        if "gqa_decode_overhead" in quirks and self.gqa and batch > 1:
            attn *= 1.1
        return self._fixed(tokens, float(batch), stage) + self.layers * attn

    def _decode_row(self, batch: float) -> np.ndarray:
        """Decode attention versus context at one batch size (cached; batch sizes repeat)."""
        row = self._rows.get(batch)
        if row is None:
            t = self.table
            row = t.decode_attention(np.full(len(t.decode_context), batch), t.decode_context)
            self._rows[batch] = row
        return row

    def _curve_key(self, stage: int) -> int:
        """Stages share a curve by position: first, last, or any middle one (key 1)."""
        return stage if stage in (0, self.pp - 1) else 1

    def stage_curve(self, stage: int) -> np.ndarray:
        """The token-indexed ops of one pipeline stage summed per token count (at ``table.tokens``), seconds."""
        return self._curves[self._curve_key(stage)]

    @property
    def lm_head_curve(self) -> np.ndarray | None:
        """The LM head's time per sequence count (at ``table.tokens``), run by the last stage; None when the
        table has no LM head."""
        return None if "lm_head" in self.table.absent else np.asarray(self._head)

    def _fixed(self, tokens: float, seqs: float, stage: int) -> float:
        t = self._lookup(self._lists[self._curve_key(stage)], tokens)
        if stage == self.pp - 1 and "lm_head" not in self.table.absent:
            t += self._lookup(self._head, seqs)
        return t

    def batch_time(self, q: np.ndarray, kv: np.ndarray, stage: int = 0) -> float:
        """``q``: query tokens per request this iteration; ``kv``: tokens in its KV cache after it."""
        decode = q == 1
        n_dec = int(np.count_nonzero(decode))
        tokens = float(q.sum())
        attn = 0.0
        quirks = self.vidur_lookups
        if n_dec:
            ctx = float(kv[decode].sum()) / n_dec
            if "decode_context_x256" in quirks:
                ctx = float(-(-int(ctx) // 256) * 256)
            a = float(np.interp(ctx, self.table.decode_context, self._decode_row(float(n_dec))))
            attn += a * (1.1 if "gqa_decode_overhead" in quirks and self.gqa and n_dec > 1 else 1.0)
        if n_dec < len(q):
            for c, k in zip(q[~decode].tolist(), kv[~decode].tolist()):
                if "prefill_context_with_chunk" in quirks:
                    attn += self._prefill_one(-(-k // 256) * 256.0, -(-c // 32) * 32.0)
                else:
                    attn += self._prefill_one(float(k - c), float(c))
        if "tokens_x8" in quirks:
            tokens = float(-(-int(tokens) // 8) * 8)
        return self._fixed(tokens, float(len(q)), stage) + self.layers * attn

    def shrinking_decode_iterations(self, batch: np.ndarray, mean_context: np.ndarray, stage: int = 0) -> np.ndarray:
        """Decode-only iterations whose batch size changes (requests finish along the way), vectorised."""
        quirks = self.vidur_lookups
        b = batch.astype(np.float64)
        tokens = -(-batch // 8) * 8.0 if "tokens_x8" in quirks else b
        if "decode_context_x256" in quirks:
            mean_context = -(-np.floor(mean_context) // 256) * 256
        attn = self.table.decode_attention(b, mean_context)
        if "gqa_decode_overhead" in quirks and self.gqa:
            attn = np.where(b > 1, attn * 1.1, attn)
        fixed = np.interp(tokens, self.table.tokens, self.stage_curve(stage))
        if stage == self.pp - 1 and "lm_head" not in self.table.absent:
            fixed = fixed + np.interp(b, self.table.tokens, np.asarray(self._head))
        return fixed + self.layers * attn

    def decode_iterations(self, batch: int, mean_context: np.ndarray, stage: int = 0) -> np.ndarray:
        """Times of successive decode-only iterations of ``batch`` requests, vectorised over iterations."""
        tokens = float(batch)
        quirks = self.vidur_lookups
        if "decode_context_x256" in quirks:
            mean_context = -(-np.floor(mean_context) // 256) * 256
        if "tokens_x8" in quirks:
            tokens = float(-(-batch // 8) * 8)
        attn = np.interp(mean_context, self.table.decode_context, self._decode_row(float(batch)))
        if "gqa_decode_overhead" in quirks and self.gqa and batch > 1:
            attn = attn * 1.1
        return self._fixed(tokens, float(batch), stage) + self.layers * attn
