"""Serving metrics from a simulation: per-request latencies, their percentiles, throughput, goodput, MFU/MBU.

Definitions (Vidur's where it has one): TTFT = first token - arrival; TBT = the gap before each later token
(pooled over all tokens); TPOT = (completion - first token) / (output tokens - 1) per request; E2E =
completion - arrival; normalised E2E = E2E / output tokens; scheduling delay = first scheduled - arrival.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perfforge.serving.simulator import SimulationOutput
from perfforge.workload.models.transformer import experts_reached

PERCENTILES = (50, 90, 99)


def weighted_percentiles(values: np.ndarray, weights: np.ndarray | None, qs: tuple[float, ...]) -> list[float]:
    """For each q, the smallest value whose cumulative weight reaches q% (the inverted-CDF definition);
    ``weights=None``: every value weighs 1. One sort for all qs."""
    if len(values) == 0:
        return [float("nan")] * len(qs)
    if weights is None:
        v = np.sort(values)
        # with unit weights the cumulative weights are 1, 2, ..., n: fewer than x of them are below x
        idx = [max(math.ceil(q / 100.0 * float(len(v))) - 1, 0) for q in qs]
    else:
        order = np.argsort(values)   # ties share a value, so their order cannot change the result
        v = values[order]
        c = np.cumsum(weights[order])
        idx = [int(np.searchsorted(c, q / 100.0 * c[-1], side="left")) for q in qs]
    return [float(v[min(i, len(v) - 1)]) for i in idx]


def _pct(x: np.ndarray) -> dict[str, float]:
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return {f"p{p}": float("nan") for p in PERCENTILES} | {"mean": float("nan")}
    out = dict(zip((f"p{p}" for p in PERCENTILES), weighted_percentiles(x, None, PERCENTILES)))
    out["mean"] = float(x.mean())
    return out


@dataclass(frozen=True)
class RequestMetrics:
    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    e2e_normalized: np.ndarray
    scheduling_delay: np.ndarray
    restarts: np.ndarray
    prefill: np.ndarray
    decode: np.ndarray
    arrival: np.ndarray
    completed_at: np.ndarray
    replica: np.ndarray


def request_metrics(out: SimulationOutput) -> RequestMetrics:
    s = out.state
    ttft = s.first_token_at - s.arrival
    e2e = s.completed_at - s.arrival
    gaps = np.maximum(s.orig_decode - 1, 1)
    tpot = np.where(s.orig_decode > 1, (s.completed_at - s.first_token_at) / gaps, np.nan)
    return RequestMetrics(ttft, tpot, e2e, e2e / s.orig_decode, s.scheduled_at - s.arrival, s.restarts.copy(),
                          s.orig_prefill, s.orig_decode, s.arrival, s.completed_at, s.replica)


def summarize(out: SimulationOutput, *, ttft_slo_s: float | None = None, tbt_slo_s: float | None = None,
              flops_per_token: float = 0.0, attn_flops_per_pair: float = 0.0, weight_bytes: float = 0.0,
              kv_bytes_per_token: float = 0.0, peak_flop_per_s: float = 0.0, peak_bytes_per_s: float = 0.0,
              devices_per_replica: int = 1, replicas: int = 1, expert_bytes: float = 0.0, experts: int = 0,
              top_k: int = 0) -> dict[str, float | int]:
    """Aggregates as a flat dict (seconds, tokens/s); ``flops``/``bytes`` figures feed MFU and MBU. Every iteration
    reads ``weight_bytes``, and of a mixture of experts' ``expert_bytes`` the share of the experts its tokens
    reach (``transformer.routed_experts``)."""
    m = request_metrics(out)
    log = out.log
    done = ~np.isnan(m.completed_at)
    res: dict[str, float | int] = {"simulated_requests": int(len(m.ttft)), "completed_requests": int(done.sum())}
    for name, arr in (("ttft", m.ttft), ("tpot", m.tpot), ("e2e", m.e2e), ("e2e_normalized", m.e2e_normalized),
                      ("scheduling_delay", m.scheduling_delay)):
        for k, v in _pct(arr).items():
            res[f"{name}_{k}_s"] = v
    for p, v in zip(PERCENTILES, weighted_percentiles(out.tbt_values, out.tbt_weights, PERCENTILES)):
        res[f"tbt_p{p}_s"] = v
    res["tbt_max_s"] = float(out.tbt_values.max()) if len(out.tbt_values) else float("nan")
    start = float(m.arrival.min())
    end = float(np.nanmax(m.completed_at)) if done.any() else start
    span = max(end - start, 1e-12)
    out_tokens = float(m.decode[done].sum())
    in_tokens = float(m.prefill[done].sum())
    res["makespan_s"] = span
    res["throughput_requests_per_s"] = float(done.sum()) / span
    res["throughput_tokens_per_s"] = (out_tokens + in_tokens) / span
    res["output_tokens_per_s"] = out_tokens / span
    res["preemptions"] = int(out.preemptions)
    res["requests_preempted"] = int((m.restarts > 0).sum())
    if ttft_slo_s is not None or tbt_slo_s is not None:
        ok = done.copy()
        if ttft_slo_s is not None:
            ok &= m.ttft <= ttft_slo_s
        if tbt_slo_s is not None:
            ok &= np.nan_to_num(m.tpot, nan=0.0) <= tbt_slo_s
        res["goodput_requests_per_s"] = float(ok.sum()) / span
        res["slo_attainment"] = float(ok.sum()) / len(ok)
    iters = np.asarray(log.iterations, dtype=np.float64)
    sizes = np.asarray(log.size, dtype=np.float64)
    res["batches"] = int(len(iters))
    res["iterations"] = int(iters.sum())
    res["batch_size_mean"] = float((sizes * iters).sum() / max(iters.sum(), 1))
    res["kv_blocks"] = int(out.num_blocks)
    blocks = np.asarray(log.blocks_used, dtype=np.float64)
    res["kv_use_max"] = float(blocks.max() / out.num_blocks) if len(blocks) else 0.0
    busy = np.asarray(log.end) - np.asarray(log.start)
    res["kv_use_mean"] = float((blocks * busy).sum() / max(busy.sum(), 1e-12) / out.num_blocks) if len(blocks) else 0.0
    if peak_flop_per_s > 0:
        tokens = float((np.asarray(log.prefill_tokens) + np.asarray(log.decode_tokens) * iters).sum())
        flops = tokens * flops_per_token + float(np.sum(log.kv_tokens)) * attn_flops_per_pair
        res["mfu"] = flops / (span * peak_flop_per_s * devices_per_replica * replicas)
    if peak_bytes_per_s > 0:
        moved = float(iters.sum()) * weight_bytes + float(np.sum(log.kv_tokens)) * kv_bytes_per_token
        if experts and expert_bytes:
            # tokens of one iteration: a batch's prefill runs in its single iteration, its decodes in each
            per_iter = np.asarray(log.prefill_tokens, dtype=np.float64) / np.maximum(iters, 1) + \
                np.asarray(log.decode_tokens, dtype=np.float64)
            moved += float((iters * experts_reached(per_iter, experts, top_k)).sum()) / experts * expert_bytes
        res["mbu"] = moved / (span * peak_bytes_per_s * devices_per_replica * replicas)
    res["events"] = int(out.events)
    return res
