"""The serving simulation, compiled with numba: the Python simulator's semantics at a fraction of its CPU.

``simulator.Simulator`` is the reference: readable, every replica layout, every routing. Its cost is
Python's per-event overhead (tens of numpy calls on small arrays per batch), not the work itself. This module
runs the same event loop as one compiled function: the same
schedulers element by element (vLLM v0, Sarathi-Serve, Orca, static), the same paged-block bookkeeping and
preemption, the same decode fast-forward (``MAX_FAST_FORWARD`` iterations at most per run, stopped by the
next arrival, a completion or a block boundary), the same batch-time lookups (``batch_time.StageTimer``,
including Vidur's lookup behaviours) and the same log and token-gap records. Tests check that both give the
same results. A cluster whose routing is known upfront (round robin, random) runs one replica at a time
(``parallel.simulate_split``); under least-outstanding routing the replicas run together in the one loop
(each event scans the replicas' stages: fine for tens of them). Pipeline-parallel replicas keep one
micro-batch per stage in flight, as the Python simulator does (no fast-forward there, in either).
numba is a dependency of the package; where it is missing everything runs in Python
(``available()`` says which).

Floating-point operations follow the Python code's order (the lookups in ``compiled_lookups``, sequential
cumulative sums), so results agree to rounding.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from perfforge.serving.batch_time import StageTimer
from perfforge.serving.compiled_lookups import HAVE_NUMBA as _HAVE_NUMBA
from perfforge.serving.compiled_lookups import batch_time, decode_iter_time, njit, shrinking_iter_time, timer_arrays
from perfforge.serving.requests import RequestSet
from perfforge.serving.schedulers import OrcaScheduler, ReplicaScheduler
from perfforge.serving.simulator import MAX_FAST_FORWARD, BatchLog, SimulationOutput
from perfforge.serving.state import RequestState

SCHEDULER_CODES = {"vllm": 0, "sarathi": 1, "orca": 2, "static": 3}
VLLM, SARATHI, ORCA, STATIC = 0, 1, 2, 3
# scalar scheduler state kept in one int64 array (compiled helpers cannot rebind their caller's ints)
# (queue head and tail are request ids: the queues are linked lists through ``qnext``)
_FREE, _NALLOC, _QHEAD, _QLEN, _RS, _RE, _PREEMPT, _GROUP, _QTAIL, _OUTST = range(10)


def available() -> bool:
    return _HAVE_NUMBA


def needs_compiling() -> bool:
    """Best effort: will the next call compile the core (nothing in this process, no cache file from numba)?
    A stale cache (an edited source) is recompiled by numba without this noticing."""
    if not _HAVE_NUMBA or _simulate.signatures:
        return False
    try:
        return not os.path.exists(_simulate._cache._cache_file._index_path)
    except AttributeError:   # numba's cache layout is not public API
        return False


def supports(scheduler: str) -> bool:
    """Can the compiled core simulate this scheduler (numba installed)?"""
    return _HAVE_NUMBA and scheduler in SCHEDULER_CODES


# ---- growable outputs ---------------------------------------------------------------------------------------
# (explicit loops instead of slice assignments and numba's sorts: its generic array machinery costs tens of
# seconds of compilation)
@njit(cache=True)
def _room(a, need):
    if need <= len(a):
        return a
    b = np.empty(max(need, 2 * len(a)), a.dtype)
    for i in range(len(a)):
        b[i] = a[i]
    return b


@njit(cache=True)
def _sort_by(keys, idx, n, buf, by_value):
    """Stable bottom-up merge sort of ``idx[:n]`` by ``keys[idx]``, or by the values themselves."""
    width = 1
    src, dst = idx, buf
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, o = lo, mid, lo
            while i < mid and j < hi:
                if (src[j] < src[i]) if by_value else (keys[src[j]] < keys[src[i]]):
                    dst[o] = src[j]
                    j += 1
                else:
                    dst[o] = src[i]
                    i += 1
                o += 1
            while i < mid:
                dst[o] = src[i]
                i += 1
                o += 1
            while j < hi:
                dst[o] = src[j]
                j += 1
                o += 1
        src, dst = dst, src
        width *= 2
    if src is not idx:
        for i in range(n):
            idx[i] = src[i]


@njit(cache=True, inline="always")   # (inlined, as _decode_one: once per request per iteration, 13% of the CPU)
def _gap(tv, tw, n, value, weight):
    """Record ``weight`` tokens that waited ``value`` s; a repeat of the last value adds to its weight (the
    percentiles see the same distribution, and a decode batch's tokens mostly share one gap)."""
    if n and tv[n - 1] == value:
        tw[n - 1] += weight
        return n
    tv[n] = value
    tw[n] = weight
    return n + 1


# ---- scheduler pieces ---------------------------------------------------------------------------------------
@njit(cache=True)
def _release(r, st, reserved):
    st[_FREE] += reserved[r]
    reserved[r] = 0
    st[_NALLOC] -= 1


@njit(cache=True)
def _q_push_back(st, qnext, r):
    if st[_QLEN] == 0:
        st[_QHEAD] = r
    else:
        qnext[st[_QTAIL]] = r
    st[_QTAIL] = r
    st[_QLEN] += 1


@njit(cache=True)
def _q_pop(st, qnext):
    """Take the queue's head (``st[_QHEAD]`` peeks at it)."""
    r = st[_QHEAD]
    st[_QLEN] -= 1
    st[_QHEAD] = qnext[r] if st[_QLEN] else -1
    return r


@njit(cache=True)
def _preempt(r, st, qnext, prefill, processed, prefill_done, reserved, restarts):
    """vLLM v0's preemption by recompute: the tokens so far become the prompt; back to the queue's head."""
    prefill[r] = processed[r]
    processed[r] = 0
    prefill_done[r] = False
    restarts[r] += 1
    _release(r, st, reserved)
    if st[_QLEN] == 0:
        st[_QTAIL] = r
    else:
        qnext[r] = st[_QHEAD]
    st[_QHEAD] = r
    st[_QLEN] += 1
    st[_PREEMPT] += 1


@njit(cache=True, inline="always")
def _decode_one(r, st, run, qnext, prefill, processed, prefill_done, reserved, restarts, bs, ids, q, nb):
    """ReplicaScheduler._decode_one: preempt the youngest running requests (at last ``r``) while no block is
    free, then grow ``r``'s blocks and add it. Returns the batch's new size."""
    while st[_FREE] < 1:
        if st[_RE] > st[_RS]:
            st[_RE] -= 1
            _preempt(run[st[_RE]], st, qnext, prefill, processed, prefill_done, reserved, restarts)
        else:
            _preempt(r, st, qnext, prefill, processed, prefill_done, reserved, restarts)
            return nb
    if processed[r] > reserved[r] * bs:
        reserved[r] += 1
        st[_FREE] -= 1
    ids[nb] = r
    q[nb] = 1
    return nb + 1


@njit(cache=True)
def _compact_running(st, run):
    """Close the gap left by requests taken from the running list's front."""
    rs, re = st[_RS], st[_RE]
    if rs:
        for i in range(re - rs):
            run[i] = run[rs + i]
    st[_RS] = 0
    st[_RE] = re - rs


@njit(cache=True)
def _can_admit(r, st, prefill, bs, watermark, kind, mbps):
    if kind >= ORCA:
        return st[_FREE] >= mbps
    return st[_FREE] - (prefill[r] + bs - 1) // bs >= watermark


@njit(cache=True)
def _admit(r, st, prefill, reserved, bs, kind, mbps):
    nblk = mbps if kind >= ORCA else (prefill[r] + bs - 1) // bs
    st[_FREE] -= nblk
    reserved[r] = nblk
    st[_NALLOC] += 1


@njit(cache=True)
def _admit_head(st, qnext, prefill, reserved, bs, kind, mbps, ids, q, nb, tokens):
    """Take the queue's head into memory and into the batch with ``tokens`` query tokens (the schedulers'
    popleft, admit, append); returns the batch's new size."""
    r = _q_pop(st, qnext)
    _admit(r, st, prefill, reserved, bs, kind, mbps)
    ids[nb] = r
    q[nb] = tokens
    return nb + 1


# ---- the simulation -----------------------------------------------------------------------------------------
@njit(cache=True)
def _simulate(arrival, prefill, total, processed, prefill_done, reserved, scheduled_at, first_token_at,
              last_token_at, completed_at, restarts, replica_of, routes, next_same, n_rep, n_stages, tm, pre,
              quirks, curves, layers, kind, lim, fast_forward, max_ff):
    """``n_rep`` replicas of ``n_stages`` pipeline stages. ``routes[i]``: request i's replica when routing is known upfront
    (``next_same[i]``: the next request routed to the same replica, or n), or all -1 for least-outstanding
    routing (a request goes to the first replica with the fewest routed, unfinished requests).
    ``lim``: num_blocks, block_size, max_batch_size, max_tokens_per_batch, chunk_size, watermark (blocks),
    max_micro, max_batch (Orca/static), max_blocks_per_seq, step_allocates, keeps_finished_slots. Returns the
    batch log's columns and length, the token gaps with their weights and count, the preemptions and the
    events. Replicas whose batches end at the same time finish in the order the batches started, and then
    schedule in replica order (the Python simulator's heap and dispatch order). With ``n_stages`` > 1 pipeline
    stages a replica keeps up to that many batches in flight (one per stage, each in a slot), a batch moves
    to the next stage's queue when a stage ends, and only the last stage's end finishes it; iterations are
    then stepped one at a time, as in the Python simulator."""
    n_req = len(arrival)
    num_blocks, bs, max_bsz, max_tok, chunk = lim[0], lim[1], lim[2], lim[3], lim[4]
    watermark, max_micro, max_batch, mbps = lim[5], lim[6], lim[7], lim[8]
    step_alloc, keeps = lim[9] > 0, lim[10] > 0
    known = n_req == 0 or routes[0] >= 0
    n_st = n_stages
    fast_forward = fast_forward and n_st == 1
    # per replica: scheduler scalars, running list, the batches in flight (slot g = replica * n_st + k) and the
    # fast-forwarded run (single stage only); per replica and stage: the batch running there and the queue
    # requests in a replica's memory: at most its batch cap (vLLM, Sarathi), or a full micro-batch per stage
    # (Orca and static batching cap each micro-batch, not the replica)
    cap = max(max_bsz, max_batch * n_st, 1) + 1
    st = np.zeros((n_rep, 10), np.int64)
    for r in range(n_rep):
        st[r, _FREE] = num_blocks
        st[r, _QHEAD] = -1
    ptr = np.full(n_rep, n_req, np.int64)     # each replica's next arrival (known routing)
    if known:
        for i in range(n_req - 1, -1, -1):
            ptr[routes[i]] = i
    qnext = np.empty(max(n_req, 1), np.int64)  # the queues, as linked lists through the requests
    runs = np.empty((n_rep, cap), np.int64)
    n_slot = n_rep * n_st
    bids = np.empty((n_slot, cap), np.int64)
    bq = np.empty((n_slot, cap), np.int64)
    bkv = np.empty((n_slot, cap), np.int64)
    bp0 = np.empty((n_slot, cap), np.int64)
    bdur = np.empty((n_rep, max_ff))
    bends = np.empty((n_rep, max_ff))
    bact = np.empty((n_rep, max_ff), np.int64)
    busy = np.zeros((n_rep, n_st), np.bool_)     # a batch runs on this stage ...
    bend = np.full((n_rep, n_st), np.inf)        # ... until then
    bseq = np.zeros((n_rep, n_st), np.int64)     # (started as the seq-th stage run)
    bslot = np.zeros((n_rep, n_st), np.int64)    # (its slot)
    wq = np.zeros((n_rep, n_st, n_st), np.int64)  # slots waiting for a stage (FIFO rings)
    wq_head = np.zeros((n_rep, n_st), np.int64)
    wq_len = np.zeros((n_rep, n_st), np.int64)
    free_slots = np.empty((n_rep, n_st), np.int64)
    n_free = np.full(n_rep, n_st, np.int64)
    for r in range(n_rep):
        for k in range(n_st):
            free_slots[r, k] = r * n_st + n_st - 1 - k   # a stack: the lowest slot on top
    in_flight = np.zeros(n_rep, np.int64)
    bnb = np.zeros(n_slot, np.int64)
    bpad = np.zeros(n_slot, np.int64)
    bdec = np.zeros(n_slot, np.bool_)
    biters = np.ones(n_slot, np.int64)
    bhas = np.zeros(n_slot, np.bool_)
    bsched = np.zeros(n_slot)
    touched = np.zeros(n_rep, np.bool_)
    # scratch shared by all replicas (used within one scheduling step)
    tmp = np.empty(cap, np.int64)
    rem = np.empty(cap, np.int64)
    order = np.empty(cap, np.int64)
    srt = np.empty(cap, np.int64)    # sort buffer
    cum = np.empty(cap + 1)
    cnt = np.empty(max_ff, np.int64)
    cap_rows = max(max_bsz, max_batch) + 2
    rows = np.empty((cap_rows + 1, len(tm[5])))
    row_ok = np.zeros(cap_rows, np.bool_)
    lg_start = np.empty(1024)
    lg_end = np.empty(1024)
    lg_size = np.empty(1024)
    lg_dec = np.empty(1024)
    lg_kv = np.empty(1024)
    lg_iters = np.empty(1024, np.int64)
    lg_pre = np.empty(1024, np.int64)
    lg_blocks = np.empty(1024, np.int64)
    lg_rep = np.empty(1024, np.int64)
    n_log = 0
    tv = np.empty(4096)
    tw = np.empty(4096)
    n_tbt = 0
    events = 0
    ai = 0
    nbusy = 0
    seq = 0
    while ai < n_req or nbusy:
        t = arrival[ai] if ai < n_req else np.inf
        for r in range(n_rep):
            for k in range(n_st):
                if busy[r, k] and bend[r, k] < t:
                    t = bend[r, k]
        for r in range(n_rep):
            touched[r] = False
        while ai < n_req and arrival[ai] == t:
            if known:
                rid = routes[ai]
                ptr[rid] = next_same[ai]
            else:
                rid = 0
                for r in range(1, n_rep):
                    if st[r, _OUTST] < st[rid, _OUTST]:
                        rid = r
            replica_of[ai] = rid
            st[rid, _OUTST] += 1
            _q_push_back(st[rid], qnext, ai)
            touched[rid] = True
            ai += 1
            events += 1
        while True:
            # stage runs ending now, in the order they started
            rid = -1
            stage = -1
            for r in range(n_rep):
                for k in range(n_st):
                    if busy[r, k] and bend[r, k] == t and (rid < 0 or bseq[r, k] < bseq[rid, stage]):
                        rid = r
                        stage = k
            if rid < 0:
                break
            busy[rid, stage] = False
            nbusy -= 1
            touched[rid] = True
            events += 1
            g = bslot[rid, stage]
            if stage < n_st - 1:                 # on to the next stage's queue
                k = stage + 1
                wq[rid, k, (wq_head[rid, k] + wq_len[rid, k]) % n_st] = g
                wq_len[rid, k] += 1
                continue
            in_flight[rid] -= 1
            free_slots[rid, n_free[rid]] = g
            n_free[rid] += 1
            st_r = st[rid]
            run = runs[rid]
            ids, q, kv, p0 = bids[g], bq[g], bkv[g], bp0[g]
            dur, ends, act = bdur[rid], bends[rid], bact[rid]
            nb, pad, decode_only, iters, has_active, sched_t = (bnb[g], bpad[g], bdec[g], biters[g],
                                                                bhas[g], bsched[g])
            # ---- the batch's end: tokens, timings, completions --------------------------------------------
            kv_read = 0.0
            decoding = -1.0
            tv = _room(tv, n_tbt + nb + iters)
            tw = _room(tw, n_tbt + nb + iters)
            if decode_only and iters > 1 and has_active:
                # a fast-forwarded run during which requests finished (Simulator._finish_shrinking)
                ssum = 0
                for i in range(nb):
                    r = ids[i]
                    rm = total[r] - p0[i]
                    steps = min(rm, iters)
                    ssum += steps
                    n_tbt = _gap(tv, tw, n_tbt, (sched_t + dur[0]) - last_token_at[r], 1.0)
                    kv_read += steps * (kv[i] - 1) + steps * (steps + 1) / 2
                for j in range(1, iters):
                    n_tbt = _gap(tv, tw, n_tbt, dur[j], float(act[j]))
                decoding = ssum / iters
                nleft = 0
                for i in range(nb):
                    r = ids[i]
                    rm = total[r] - p0[i]
                    steps = min(rm, iters)
                    proc = p0[i] + steps
                    processed[r] = proc
                    if rm <= iters:
                        completed_at[r] = ends[rm - 1]
                        last_token_at[r] = ends[rm - 1]
                    else:
                        last_token_at[r] = t
                        if step_alloc:
                            need = (proc - 1 + bs - 1) // bs
                            if need > reserved[r]:
                                st_r[_FREE] -= need - reserved[r]
                                reserved[r] = need
                        tmp[nleft] = r
                        nleft += 1
                for i in range(nb):
                    if total[ids[i]] - p0[i] <= iters:
                        _release(ids[i], st_r, reserved)
                        st_r[_OUTST] -= 1
            else:
                if decode_only:
                    if iters > 1:
                        first_end = sched_t + dur[0]
                        for i in range(nb):
                            n_tbt = _gap(tv, tw, n_tbt, first_end - last_token_at[ids[i]], 1.0)
                        for j in range(1, iters):
                            n_tbt = _gap(tv, tw, n_tbt, dur[j], float(nb))
                        ksum = 0
                        for i in range(nb):
                            ksum += kv[i]
                        kv_read = iters * float(ksum) + nb * iters * (iters - 1) / 2
                    else:
                        ksum = 0
                        for i in range(nb):
                            n_tbt = _gap(tv, tw, n_tbt, t - last_token_at[ids[i]], 1.0)
                            ksum += kv[i]
                        kv_read = float(ksum)
                    for i in range(nb):
                        r = ids[i]
                        proc = processed[r] + iters
                        processed[r] = proc
                        if iters > 1 and step_alloc:
                            need = (proc - 1 + bs - 1) // bs
                            if need > reserved[r]:
                                st_r[_FREE] -= need - reserved[r]
                                reserved[r] = need
                        last_token_at[r] = t
                else:
                    ksum = 0
                    for i in range(nb):
                        ksum += kv[i]
                    kv_read = float(ksum)
                    for i in range(nb):
                        r = ids[i]
                        proc = processed[r] + q[i]
                        was_decode = prefill_done[r]
                        if not was_decode and proc == prefill[r]:
                            prefill_done[r] = True
                            proc += 1          # the prefill's forward pass yields the first token
                            if np.isnan(first_token_at[r]):
                                first_token_at[r] = t
                            out = True
                        else:
                            out = was_decode
                        processed[r] = proc
                        if out:
                            prev = last_token_at[r]
                            if not np.isnan(prev):
                                n_tbt = _gap(tv, tw, n_tbt, t - prev, 1.0)
                            last_token_at[r] = t
                # completions free their blocks; the rest go back to the scheduler (Simulator._end)
                nleft = 0
                for i in range(nb):
                    r = ids[i]
                    if processed[r] >= total[r]:
                        completed_at[r] = t
                for i in range(nb):
                    r = ids[i]
                    if processed[r] >= total[r]:
                        _release(r, st_r, reserved)
                        st_r[_OUTST] -= 1
                    else:
                        tmp[nleft] = r
                        nleft += 1
            # on_batch_end: unfinished requests join the running list
            if st_r[_RE] + nleft > run.shape[0]:
                raise RuntimeError("serving core: running list overflow")
            for i in range(nleft):
                run[st_r[_RE]] = tmp[i]
                st_r[_RE] += 1
            if kind == STATIC and st_r[_RE] == 0:
                st_r[_GROUP] = 0
            # the batch log (BatchLog.add)
            if n_log == len(lg_start):
                lg_start, lg_end, lg_size = _room(lg_start, n_log + 1), _room(lg_end, n_log + 1), _room(lg_size, n_log + 1)
                lg_dec, lg_kv = _room(lg_dec, n_log + 1), _room(lg_kv, n_log + 1)
                lg_iters, lg_pre, lg_blocks = _room(lg_iters, n_log + 1), _room(lg_pre, n_log + 1), _room(lg_blocks, n_log + 1)
                lg_rep = _room(lg_rep, n_log + 1)
            lg_rep[n_log] = rid
            lg_start[n_log] = sched_t
            lg_end[n_log] = t
            lg_iters[n_log] = iters
            if decode_only:
                dec = float(nb) if decoding < 0 else decoding
                lg_size[n_log] = float(nb + pad) if (keeps and has_active) or decoding < 0 else dec
                lg_pre[n_log] = 0
                lg_dec[n_log] = dec
            else:
                ndec = 0
                qsum = 0
                for i in range(nb):
                    qsum += q[i]
                    if q[i] == 1:
                        ndec += 1
                lg_size[n_log] = float(nb + pad)
                lg_pre[n_log] = qsum - ndec
                lg_dec[n_log] = float(ndec)
            lg_kv[n_log] = kv_read
            lg_blocks[n_log] = num_blocks - st_r[_FREE]
            n_log += 1
        for rid in range(n_rep):
            if not touched[rid]:
                continue
            for k in range(1, n_st):             # waiting batches move on to free stages
                if not busy[rid, k] and wq_len[rid, k]:
                    g = wq[rid, k, wq_head[rid, k]]
                    wq_head[rid, k] = (wq_head[rid, k] + 1) % n_st
                    wq_len[rid, k] -= 1
                    nb, pad = bnb[g], bpad[g]
                    ids, q, kv = bids[g], bq[g], bkv[g]
                    ci = 2 if k == n_st - 1 else 1
                    dt = batch_time(tm, pre, rows, row_ok, quirks, layers, q, kv, nb, pad, curves[ci],
                                    k == n_st - 1)
                    busy[rid, k] = True
                    bend[rid, k] = t + dt
                    bseq[rid, k] = seq
                    bslot[rid, k] = g
                    seq += 1
                    nbusy += 1
            if in_flight[rid] >= n_st or busy[rid, 0]:
                continue
            g = free_slots[rid, n_free[rid] - 1]
            st_r = st[rid]
            run = runs[rid]
            ids, q, kv, p0 = bids[g], bq[g], bkv[g], bp0[g]
            dur, ends, act = bdur[rid], bends[rid], bact[rid]
            if known:
                nxt_t = arrival[ptr[rid]] if ptr[rid] < n_req else np.inf
            else:
                nxt_t = arrival[ai] if ai < n_req else np.inf
            nb = 0
            pad = 0
            decode_only = False
            # sort the running list (every scheduler starts from it in arrival order)
            re = st_r[_RE]
            unsorted = False
            for i in range(1, re):
                if run[i] < run[i - 1]:
                    unsorted = True
                    break
            if unsorted:
                _sort_by(run, run, re, srt, True)
            st_r[_RS] = 0
            if kind == VLLM:
                tokens = 0
                while st_r[_QLEN] > 0:
                    r = st_r[_QHEAD]
                    nt = prefill[r]
                    if (not _can_admit(r, st_r, prefill, bs, watermark, kind, mbps) or tokens + nt > max_tok
                            or st_r[_NALLOC] == max_bsz or nb == max_micro):
                        break
                    nb = _admit_head(st_r, qnext, prefill, reserved, bs, kind, mbps, ids, q, nb, nt)
                    tokens += nt
                if nb == 0:
                    while st_r[_RE] > st_r[_RS] and nb < max_micro:
                        r = run[st_r[_RS]]
                        st_r[_RS] += 1
                        nb = _decode_one(r, st_r, run, qnext, prefill, processed, prefill_done, reserved, restarts,
                                         bs, ids, q, nb)
                    decode_only = True
                _compact_running(st_r, run)
            elif kind == SARATHI:
                budget = chunk
                npart = 0
                while st_r[_RE] > st_r[_RS] and nb < max_micro:
                    r = run[st_r[_RS]]
                    st_r[_RS] += 1
                    if not prefill_done[r]:
                        tmp[npart] = r
                        npart += 1
                        continue
                    nb = _decode_one(r, st_r, run, qnext, prefill, processed, prefill_done, reserved, restarts,
                                     bs, ids, q, nb)
                used = nb
                partial_used = False
                nskip = 0
                for i in range(npart):          # continue chunked prefills (their blocks are already held)
                    r = tmp[i]
                    nt = min(prefill[r] - processed[r], budget - used)
                    if nt <= 0:
                        tmp[nskip] = r            # skipped ones stay in order, ahead of the rest
                        nskip += 1
                        continue
                    ids[nb] = r
                    q[nb] = nt
                    nb += 1
                    used += nt
                    partial_used = True
                rs, re = st_r[_RS], st_r[_RE]
                if nskip:                        # nskip <= rs: the skipped were taken from the front
                    for i in range(re - rs):
                        run[nskip + i] = run[rs + i]
                    for i in range(nskip):
                        run[i] = tmp[i]
                    st_r[_RS] = 0
                    st_r[_RE] = nskip + re - rs
                else:
                    _compact_running(st_r, run)
                admitted = False
                while st_r[_QLEN] > 0:
                    if st_r[_NALLOC] == max_bsz or nb == max_micro:
                        break
                    r = st_r[_QHEAD]
                    if not _can_admit(r, st_r, prefill, bs, watermark, kind, mbps):
                        break
                    nt = min(prefill[r], budget - used)
                    if nt <= 0:
                        break
                    nb = _admit_head(st_r, qnext, prefill, reserved, bs, kind, mbps, ids, q, nb, nt)
                    used += nt
                    admitted = True
                decode_only = not partial_used and not admitted
            elif kind == ORCA:
                take = min(st_r[_RE], max_batch)
                for i in range(take):
                    ids[i] = run[i]
                    q[i] = 1
                nb = take
                st_r[_RS] = take
                _compact_running(st_r, run)
                decode_only = True
                while st_r[_QLEN] > 0 and nb < max_batch and _can_admit(st_r[_QHEAD], st_r, prefill, bs, watermark,
                                                                      kind, mbps):
                    nb = _admit_head(st_r, qnext, prefill, reserved, bs, kind, mbps, ids, q, nb,
                                     prefill[st_r[_QHEAD]])
                    decode_only = False
            else:   # STATIC
                if st_r[_RE] == 0:
                    if st_r[_GROUP] == 0:
                        while st_r[_QLEN] > 0 and nb < max_batch and _can_admit(st_r[_QHEAD], st_r, prefill, bs,
                                                                              watermark, kind, mbps):
                            nb = _admit_head(st_r, qnext, prefill, reserved, bs, kind, mbps, ids, q, nb,
                                             prefill[st_r[_QHEAD]])
                        st_r[_GROUP] = nb
                else:
                    nb = st_r[_RE]
                    for i in range(nb):
                        ids[i] = run[i]
                        q[i] = 1
                    st_r[_RE] = 0
                    decode_only = True
                    pad = st_r[_GROUP] - nb
            if nb == 0:
                continue
            for i in range(nb):
                kv[i] = processed[ids[i]] + q[i]
            sched_t = t
            iters = 1
            has_active = False
            if decode_only:
                for i in range(nb):
                    p0[i] = processed[ids[i]]
                if fast_forward:
                    # ---- fast-forward (Simulator._extend) -------------------------------------------------------
                    blocked = -1                  # -1: a queued request could join now; 0: queue empty; 1: blocked
                    if st_r[_QLEN] == 0:
                        blocked = 0
                    else:
                        r = st_r[_QHEAD]
                        if kind == VLLM:
                            if (not _can_admit(r, st_r, prefill, bs, watermark, kind, mbps) or st_r[_NALLOC] == max_bsz
                                    or prefill[r] > max_tok):
                                blocked = 1
                        elif kind == SARATHI:
                            if (st_r[_NALLOC] == max_bsz or nb >= max_micro or nb >= chunk
                                    or not _can_admit(r, st_r, prefill, bs, watermark, kind, mbps)):
                                blocked = 1
                        elif kind == ORCA:
                            if nb >= max_batch or not _can_admit(r, st_r, prefill, bs, watermark, kind, mbps):
                                blocked = 1
                        else:
                            blocked = 1
                    if kind == STATIC:
                        blocked = 1
                    if blocked >= 0:
                        rmin = total[ids[0]] - p0[0]
                        rmax = rmin
                        psum = 0
                        for i in range(nb):
                            rem[i] = total[ids[i]] - p0[i]
                            rmin = min(rmin, rem[i])
                            rmax = max(rmax, rem[i])
                            psum += p0[i]
                        through = known and st_r[_RE] == 0 and (blocked == 0 or keeps)
                        k = min(rmax if through else rmin, max_ff)
                        nxt = nxt_t
                        if blocked == 0 and k > 32 and nxt < np.inf:
                            d0 = decode_iter_time(tm, rows, row_ok, quirks, layers, 1 if through else nb + pad,
                                                   float(psum) / nb + 1.0)
                            k = min(k, int((nxt - t) / d0) + 2)
                        if k > 1 and step_alloc and st_r[_FREE] <= nb * (k // bs + 2):
                            # iterations at which requests cross a block boundary; stop before the blocks run out
                            for j in range(k):
                                cnt[j] = 0
                            for i in range(nb):
                                first = reserved[ids[i]] * bs - p0[i] + 1
                                for o in range(0, k, bs):
                                    it = first + o
                                    if it >= 1 and it < k and it < rem[i]:
                                        cnt[it] += 1
                            c = 0
                            for j in range(k):
                                c += cnt[j]
                                if st_r[_FREE] - c < 1:
                                    k = j
                                    break
                        if k > 1:
                            shrinking = through and rmin < k
                            if shrinking:
                                for i in range(nb):
                                    order[i] = i
                                _sort_by(rem, order, nb, srt, False)
                                cum[0] = 0.0
                                for i in range(nb):
                                    cum[i + 1] = cum[i] + p0[order[i]]
                                gone = 0
                                for j in range(k):
                                    while gone < nb and rem[order[gone]] <= j:
                                        gone += 1
                                    a = nb - gone
                                    act[j] = a
                                    ctx = (cum[nb] - cum[gone]) / a + 1.0 + j
                                    if keeps:
                                        dur[j] = decode_iter_time(tm, rows, row_ok, quirks, layers, nb + pad, ctx)
                                    else:
                                        dur[j] = shrinking_iter_time(tm, quirks, layers, a, ctx)
                            else:
                                base = float(psum) / nb + 1.0
                                for j in range(k):
                                    dur[j] = decode_iter_time(tm, rows, row_ok, quirks, layers, nb + pad, base + j)
                            s = 0.0
                            for j in range(k):
                                s += dur[j]
                                ends[j] = s
                            if blocked == 0:
                                # iterations that end before the next arrival, plus the one it arrives during
                                x = nxt - t
                                lo = 0
                                while lo < k and ends[lo] < x:
                                    lo += 1
                                k = min(k, 1 + lo)
                            if k > 1:
                                iters = k
                                run_time = ends[k - 1]
                                has_active = shrinking
                                for j in range(k):
                                    ends[j] = sched_t + ends[j]
            else:
                for i in range(nb):                # only prompts can be scheduled for the first time
                    r = ids[i]
                    if not prefill_done[r] and np.isnan(scheduled_at[r]):
                        scheduled_at[r] = t
            if iters > 1:
                dt = run_time
            else:
                dt = batch_time(tm, pre, rows, row_ok, quirks, layers, q, kv, nb, pad, curves[0], n_st == 1)
            n_free[rid] -= 1
            in_flight[rid] += 1
            busy[rid, 0] = True
            bend[rid, 0] = t + dt
            bseq[rid, 0] = seq
            bslot[rid, 0] = g
            seq += 1
            nbusy += 1
            bnb[g], bpad[g], bdec[g], biters[g], bhas[g], bsched[g] = nb, pad, decode_only, iters, has_active, sched_t
    return (lg_rep, lg_start, lg_end, lg_size, lg_dec, lg_kv, lg_iters, lg_pre, lg_blocks, n_log, tv, tw, n_tbt,
            st[:, _PREEMPT].sum(), events)


# ---- Python side --------------------------------------------------------------------------------------------
def simulate_replica(requests: RequestSet, timer: StageTimer,
                     make_scheduler: Callable[[RequestState], ReplicaScheduler],
                     fast_forward: bool = True) -> SimulationOutput:
    """One replica serving ``requests`` (arrival order) with the compiled core
    (``parallel.ReplicaRunner``)."""
    return simulate_cluster(requests, timer, make_scheduler, fast_forward, routes=np.zeros(len(requests), np.int64))


def simulate_cluster(requests: RequestSet, timer: StageTimer,
                     make_scheduler: Callable[[RequestState], ReplicaScheduler], fast_forward: bool = True, *,
                     replicas: int = 1, routes: np.ndarray | None = None) -> SimulationOutput:
    """Replicas serving ``requests`` (arrival order) together with the compiled core. ``routes``:
    each request's replica when routing is known upfront; None: least-outstanding routing over ``replicas``.
    The scheduler that ``make_scheduler`` makes supplies its kind, limits and derived caps; the compiled loop
    does its work."""
    state = RequestState(requests)
    scheduler = make_scheduler(state)
    if not supports(scheduler.name):
        raise ValueError(f"the compiled core does not cover scheduler '{scheduler.name}' "
                         f"(numba installed: {_HAVE_NUMBA})")
    n = len(requests)
    if routes is None:
        route_arr, next_same = np.full(n, -1, np.int64), np.full(n, n, np.int64)
    else:
        route_arr = np.asarray(routes, dtype=np.int64)
        replicas = max(replicas, int(route_arr.max()) + 1 if n else 1)
        next_same = np.full(n, n, np.int64)      # the next request routed to the same replica
        last = np.full(replicas, n, np.int64)
        for i in range(n - 1, -1, -1):             # (once per run: cheap next to the simulation)
            next_same[i] = last[route_arr[i]]
            last[route_arr[i]] = i
    lim = scheduler.lim
    orca = isinstance(scheduler, OrcaScheduler)
    caps = np.array([lim.num_blocks, lim.block_size, lim.max_batch_size, lim.max_tokens_per_batch, lim.chunk_size,
                     scheduler.watermark, scheduler.max_micro, scheduler.max_batch if orca else 0,
                     scheduler.max_blocks_per_seq, int(scheduler.step_allocates),
                     int(scheduler.keeps_finished_slots)], dtype=np.int64)
    tm, pre, quirks, curves = timer_arrays(timer)
    (rep, start, end, size, dec, kv, iters, pre_tok, blocks, n_log, tv, tw, n_tbt, preemptions,
     events) = _simulate(
        state.arrival, state.prefill, state.total, state.processed, state.prefill_done, state.reserved,
        state.scheduled_at, state.first_token_at, state.last_token_at, state.completed_at, state.restarts,
        state.replica, route_arr, next_same, replicas, timer.pp, tm, pre, quirks, curves, float(timer.layers),
        SCHEDULER_CODES[scheduler.name], caps, fast_forward, MAX_FAST_FORWARD)
    m = int(n_log)
    log = BatchLog(replica=rep[:m].tolist(), start=start[:m].tolist(), end=end[:m].tolist(),
                   iterations=iters[:m].tolist(), size=size[:m].tolist(), prefill_tokens=pre_tok[:m].tolist(),
                   decode_tokens=dec[:m].tolist(), kv_tokens=kv[:m].tolist(), blocks_used=blocks[:m].tolist())
    return SimulationOutput(state, log, tv[:n_tbt].copy(), tw[:n_tbt].copy(), int(preemptions), lim.num_blocks,
                            int(events))
