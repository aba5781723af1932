"""Batch-time lookups for the compiled serving core: ``batch_time.StageTimer`` operation for operation.

Each function mirrors one StageTimer or OperatorTable lookup for one element, with the same formula and term
order (numpy's ``interp``; the bilinear lookups' own orders), so the compiled core's batch times equal the
Python simulator's bit for bit. ``timer_arrays`` packs a StageTimer into the arrays these functions read.
"""

from __future__ import annotations

import math

import numpy as np

from perfforge.serving.batch_time import StageTimer

try:  # pragma: no cover - exercised by whichever environment runs the tests
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        """Without numba the functions stay plain Python (the compiled core is then not used)."""
        if args and callable(args[0]):
            return args[0]
        return lambda f: f


@njit(cache=True)
def _bisect_right(a, x):
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def _np_interp(x, xp, fp):
    """numpy.interp for one x (its C loop: clamped ends, exact hits, slope * (x - x_j) + y_j)."""
    n = len(xp)
    if x < xp[0]:
        return fp[0]
    if x > xp[n - 1]:
        return fp[n - 1]
    j = _bisect_right(xp, x) - 1
    if j >= n - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    return slope * (x - xp[j]) + fp[j]


@njit(cache=True)
def _lookup(g, ys, x):
    """StageTimer._lookup: linear, flat below the grid, extrapolated above it."""
    if x <= g[0]:
        return ys[0]
    i = _bisect_right(g, x) - 1
    if i >= len(g) - 1:
        i = len(g) - 2
    return ys[i] + (ys[i + 1] - ys[i]) * (x - g[i]) / (g[i + 1] - g[i])


@njit(cache=True)
def _cell(grid, v):
    """The grid interval holding ``v`` clamped to the grid, and ``v``'s fraction of the way across it (the
    clamping and index arithmetic of ``optable.interp2`` and ``StageTimer._prefill_one``)."""
    v = min(max(v, grid[0]), grid[len(grid) - 1])
    i = min(_bisect_right(grid, v) - 1, len(grid) - 2)
    return i, (v - grid[i]) / (grid[i + 1] - grid[i])


@njit(cache=True)
def _interp2(xg, yg, z, x, y):
    """optable.interp2 for one point (clamped bilinear)."""
    i, tx = _cell(xg, x)
    j, ty = _cell(yg, y)
    z00 = z[i, j]
    z10 = z[i + 1, j]
    z01 = z[i, j + 1]
    z11 = z[i + 1, j + 1]
    return z00 + tx * (z10 - z00) + ty * (z01 - z00) + tx * ty * (z11 - z10 - z01 + z00)


@njit(cache=True)
def _prefill_one(xs, ys, z, ctx, chunk):
    """StageTimer._prefill_one (its own term order)."""
    i, tx = _cell(xs, ctx)
    j, ty = _cell(ys, chunk)
    return ((1 - tx) * (1 - ty) * z[i, j] + tx * (1 - ty) * z[i + 1, j]
            + (1 - tx) * ty * z[i, j + 1] + tx * ty * z[i + 1, j + 1])


@njit(cache=True)
def _decode_row(rows, row_ok, dec_b, dec_c, dec_z, b):
    """Decode attention versus context at batch size b (StageTimer._decode_row), cached per batch size."""
    cap = len(row_ok)
    slot = b if b < cap else cap     # the last row is scratch space for batch sizes beyond the cache
    if slot < cap and row_ok[slot]:
        return rows[slot]
    for j in range(len(dec_c)):
        rows[slot, j] = _interp2(dec_b, dec_c, dec_z, float(b), dec_c[j])
    if slot < cap:
        row_ok[slot] = True
    return rows[slot]


@njit(cache=True)
def _fixed(g, curve, head, has_head, tokens, seqs):
    t = _lookup(g, curve, tokens)
    if has_head:
        t += _lookup(g, head, seqs)
    return t


@njit(cache=True)
def _ceil_to(x, m):
    return ((x + m - 1) // m) * m


# quirk flags: bit 0 tokens_x8, bit 1 decode_context_x256, bit 2 prefill_context_with_chunk, bit 3 gqa overhead
# (already combined with "the model has grouped-query attention")
@njit(cache=True)
def decode_iter_time(tm, rows, row_ok, quirks, layers, batch, ctx):
    """One decode-only iteration of ``batch`` requests at mean context ``ctx`` (StageTimer.decode_iterations
    for one element; decode_one is the same lookup)."""
    g, curve, head, has_head, dec_b, dec_c, dec_z = tm[0], tm[1], tm[2], tm[3][0] > 0, tm[4], tm[5], tm[6]
    tokens = float(_ceil_to(batch, 8)) if quirks & 1 else float(batch)
    if quirks & 2:
        ctx = float(_ceil_to(int(math.floor(ctx)), 256))
    attn = _np_interp(ctx, dec_c, _decode_row(rows, row_ok, dec_b, dec_c, dec_z, batch))
    if quirks & 8 and batch > 1:
        attn = attn * 1.1
    return _fixed(g, curve, head, has_head, tokens, float(batch)) + layers * attn


@njit(cache=True)
def shrinking_iter_time(tm, quirks, layers, active, ctx):
    """StageTimer.shrinking_decode_iterations for one element (direct bilinear lookup, numpy.interp)."""
    g, curve, head, has_head, dec_b, dec_c, dec_z = tm[0], tm[1], tm[2], tm[3][0] > 0, tm[4], tm[5], tm[6]
    b = float(active)
    tokens = float(_ceil_to(active, 8)) if quirks & 1 else b
    if quirks & 2:
        ctx = float(_ceil_to(int(math.floor(ctx)), 256))
    attn = _interp2(dec_b, dec_c, dec_z, b, ctx)
    if quirks & 8 and b > 1:
        attn = attn * 1.1
    fixed = _np_interp(tokens, g, curve)
    if has_head:
        fixed = fixed + _np_interp(b, g, head)
    return fixed + layers * attn


@njit(cache=True)
def batch_time(tm, pre, rows, row_ok, quirks, layers, q, kv, n, pad, curve, last_stage):
    """StageTimer.batch_time over the batch's ``n`` requests plus ``pad`` padded decode slots at the requests'
    mean context, on a stage whose token-indexed ops sum to ``curve`` (the LM head runs on the last stage)."""
    g, head, has_head, dec_b, dec_c, dec_z = tm[0], tm[2], tm[3][0] > 0 and last_stage, tm[4], tm[5], tm[6]
    n_dec = pad
    tok = pad
    kv_dec = 0.0
    if pad:
        s_kv = 0
        for i in range(n):
            s_kv += kv[i]
        kv_dec = pad * (s_kv / n)
    for i in range(n):
        tok += q[i]
        if q[i] == 1:
            n_dec += 1
            kv_dec += kv[i]
    attn = 0.0
    if n_dec:
        ctx = kv_dec / n_dec
        if quirks & 2:
            ctx = float(_ceil_to(int(ctx), 256))
        a = _np_interp(ctx, dec_c, _decode_row(rows, row_ok, dec_b, dec_c, dec_z, n_dec))
        attn += a * (1.1 if quirks & 8 and n_dec > 1 else 1.0)
    if n_dec < n + pad:
        for i in range(n):
            if q[i] != 1:
                c, k = q[i], kv[i]
                if quirks & 4:
                    attn += _prefill_one(pre[0], pre[1], pre[2], float(_ceil_to(k, 256)), float(_ceil_to(c, 32)))
                else:
                    attn += _prefill_one(pre[0], pre[1], pre[2], float(k - c), float(c))
    tokens = float(_ceil_to(tok, 8)) if quirks & 1 else float(tok)
    return _fixed(g, curve, head, has_head, tokens, float(n + pad)) + layers * attn


def timer_arrays(timer: StageTimer) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], int, np.ndarray]:
    """(lookup arrays, prefill-attention arrays, Vidur-lookup flags, stage curves): the curves of the token
    ops summed per stage kind, rows first / middle / last stage (``StageTimer.stage_curve``)."""
    t = timer.table
    head_curve = timer.lm_head_curve
    has_head = head_curve is not None
    head = np.asarray(head_curve if has_head else np.zeros(len(t.tokens)), dtype=np.float64)
    tm = (np.asarray(t.tokens, np.float64), np.asarray(timer.stage_curve(0), np.float64), head,
          np.array([1.0 if has_head else 0.0]), np.asarray(t.decode_batch, np.float64),
          np.asarray(t.decode_context, np.float64), np.ascontiguousarray(t.decode_time, np.float64))
    pre = (np.asarray(t.prefill_context, np.float64), np.asarray(t.prefill_chunk, np.float64),
           np.ascontiguousarray(t.prefill_time, np.float64))
    q = timer.vidur_lookups
    quirks = (1 * ("tokens_x8" in q) + 2 * ("decode_context_x256" in q) + 4 * ("prefill_context_with_chunk" in q)
              + 8 * ("gqa_decode_overhead" in q and timer.gqa))
    curves = np.zeros((3, len(t.tokens)))
    curves[0] = timer.stage_curve(0)
    curves[2] = timer.stage_curve(timer.pp - 1)
    if timer.pp > 2:
        curves[1] = timer.stage_curve(1)
    return tm, pre, quirks, curves
