"""Capacity and configuration search (what Vidur-Search does), on perfforge's fast simulator.

``capacity(spec, slo)`` bisects on the Poisson arrival rate for the highest QPS whose TTFT and TBT
percentiles stay within the SLOs. ``search_configs`` runs that for every point of a grid (GPU type, TP, PP,
replicas, scheduler, batch cap, chunk size) in parallel, locally or on Ray, and ranks the configurations
by cost per million tokens at capacity.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from perfforge.core.errors import ConfigError, InfeasibleError
from perfforge.serving.spec import ServeSpec

# $/GPU-hour: CoreWeave list prices of 7 Feb 2024, as Vidur 0.0.26 uses them
# (vidur/config_optimizer/analyzer/constants.py, GPU_COSTS). Override with prices={...}.
GPU_PRICE_PER_HOUR = {"h100-sxm5-80gb": 4.25, "a100-sxm4-80gb": 2.21, "a40": 1.28}


@dataclass(frozen=True)
class SLO:
    ttft_s: float = 2.0
    ttft_quantile: int = 90
    tbt_s: float = 0.2
    tbt_quantile: int = 99

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tbt_s"):
            value = getattr(self, name)
            if not value > 0 or math.isinf(value):
                raise ConfigError(f"SLO {name.removesuffix('_s')} must be a positive number of seconds, got {value}")

    def check(self, summary: dict[str, Any]) -> bool:
        ttft = summary.get(f"ttft_p{self.ttft_quantile}_s")
        tbt = summary.get(f"tbt_p{self.tbt_quantile}_s")
        if ttft is None or tbt is None:
            raise ConfigError(f"SLO quantiles must be one of 50, 90, 99 (got {self.ttft_quantile}, {self.tbt_quantile})")
        done = summary["completed_requests"] == summary["simulated_requests"]
        return bool(done and ttft <= self.ttft_s and (math.isnan(tbt) or tbt <= self.tbt_s))


@dataclass(frozen=True)
class Capacity:
    qps: float                 # highest rate found within the SLOs (0 if none)
    ttft_s: float              # at that rate, at the SLO's quantiles
    tbt_s: float
    runs: int
    upper_qps: float           # lowest rate seen to violate the SLOs


def _run(spec: ServeSpec, qps: float) -> dict[str, Any]:
    from perfforge.serving.run import simulate

    return simulate(spec.model_copy(update={"qps": qps, "arrival": "poisson"})).summary


def capacity(spec: ServeSpec, slo: SLO = SLO(), *, rel_tol: float = 0.02, max_runs: int = 20) -> Capacity:
    """Bisection between 0 and a rate the SLOs fail at. The start bracket comes from the replica's
    saturated throughput (all requests at time 0), so no rate guess is needed."""
    from perfforge.serving.run import simulate

    sat = simulate(spec.model_copy(update={"arrival": "static"})).summary
    if slo.check(sat):
        # every request arriving at once still meets the SLOs: no arrival rate of this request set breaks them
        raise ConfigError(f"capacity is unbounded at {spec.requests} requests: the SLOs hold even when all of them "
                          f"arrive at once (TTFT p{slo.ttft_quantile} {sat[f'ttft_p{slo.ttft_quantile}_s']:.3g} s); "
                          "simulate more requests (--requests) or tighten the SLOs")
    hi = max(sat["throughput_requests_per_s"] * 1.5, 1e-3)
    lo, best, runs = 0.0, None, 1
    while runs < max_runs:
        s = _run(spec, hi)
        runs += 1
        if not slo.check(s):
            break
        lo, best = hi, s
        hi *= 2
    while runs < max_runs and (hi - lo) > rel_tol * hi:
        mid = (lo + hi) / 2
        s = _run(spec, mid)
        runs += 1
        if slo.check(s):
            lo, best = mid, s
        else:
            hi = mid
    if best is None:
        return Capacity(lo, math.nan, math.nan, runs, hi)
    return Capacity(lo, best[f"ttft_p{slo.ttft_quantile}_s"], best[f"tbt_p{slo.tbt_quantile}_s"], runs, hi)


def _grid(spec: ServeSpec, axes: dict[str, list[Any]]) -> list[ServeSpec]:
    allowed = {"hardware", "tp", "pp", "replicas", "scheduler", "max_batch_size", "chunk_size"}
    bad = sorted(set(axes) - allowed)
    if bad:
        raise ConfigError(f"cannot search over {', '.join(bad)} (allowed: {', '.join(sorted(allowed))})")
    names = list(axes)
    out = []
    for values in itertools.product(*(axes[n] for n in names)):
        update = dict(zip(names, values))
        if update.get("scheduler", spec.scheduler) != "sarathi" and "chunk_size" in update \
                and update["chunk_size"] != axes["chunk_size"][0]:
            continue   # chunk size only matters to sarathi
        out.append(spec.model_copy(update=update))
    return out


def _evaluate(job: tuple[ServeSpec, SLO, dict[str, float]]) -> dict[str, Any]:
    spec, slo, prices = job
    row: dict[str, Any] = {k: getattr(spec, k) for k in ("hardware", "tp", "pp", "replicas", "scheduler",
                                                         "max_batch_size", "chunk_size")}
    gpus = spec.tp * spec.pp * spec.replicas
    row["gpus"] = gpus
    try:
        cap = capacity(spec, slo)
    except (ConfigError, InfeasibleError) as exc:
        row.update(feasible=False, reason=str(exc))
        return row
    tokens = spec.prefill + spec.decode if spec.length == "fixed" else float("nan")
    price = prices.get(spec.hardware)
    row.update(feasible=cap.qps > 0, capacity_qps=cap.qps, ttft_s=cap.ttft_s, tbt_s=cap.tbt_s, runs=cap.runs)
    if price is not None and cap.qps > 0:
        row["usd_per_hour"] = price * gpus
        row["usd_per_million_tokens"] = price * gpus / (cap.qps * tokens * 3600) * 1e6
    return row


def search_configs(spec: ServeSpec, axes: dict[str, list[Any]], slo: SLO = SLO(), *,
                   prices: dict[str, float] | None = None, executor: str = "local", jobs: int = 1) -> list[dict[str, Any]]:
    """Every grid point's capacity and cost, cheapest per token first (unpriced and infeasible last)."""
    from perfforge.evaluation.executors import map_unordered

    table = {**GPU_PRICE_PER_HOUR, **(prices or {})}
    jobs_list = [(s, slo, table) for s in _grid(spec, axes)]
    rows = list(map_unordered(_evaluate, jobs_list, executor=executor, jobs=jobs))
    return sorted(rows, key=lambda r: (not r.get("feasible"), r.get("usd_per_million_tokens", math.inf),
                                       -r.get("capacity_qps", 0.0)))

