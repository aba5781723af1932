"""Run a ``ServeSpec``: operator table -> stage timer -> KV plan -> schedulers -> simulation -> metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from perfforge.core.dtypes import DType
from perfforge.core.errors import ConfigError
from perfforge.serving import compiled
from perfforge.serving.batch_time import VIDUR_LOOKUPS, StageTimer
from perfforge.serving.kv_cache import KVPlan, plan_kv
from perfforge.serving.metrics import request_metrics, summarize
from perfforge.serving.optable import OperatorTable, model_table
from perfforge.serving.parallel import can_split, python_replica, simulate_split
from perfforge.serving.requests import RequestSet, generate
from perfforge.serving.schedulers import SCHEDULERS, ReplicaScheduler, SchedulerLimits
from perfforge.serving.simulator import SimulationOutput, Simulator
from perfforge.serving.spec import ServeSpec
from perfforge.serving.state import RequestState


@dataclass
class ServingReport:
    spec: ServeSpec
    summary: dict[str, Any]
    output: SimulationOutput = field(repr=False)
    kv: KVPlan
    table_source: str
    wall_s: float

    def to_json(self) -> str:
        from perfforge.core.files import dumps_json

        return dumps_json({"spec": self.spec.model_dump(mode="json"), **self.summary,
                           "kv_capacity_tokens": self.kv.capacity_tokens, "operator_source": self.table_source,
                           "simulation_wall_s": self.wall_s}, indent=2, default=_num)

    def requests_csv(self) -> str:
        m = request_metrics(self.output)
        cols = ("arrival", "prefill", "decode", "replica", "ttft", "tpot", "e2e", "e2e_normalized",
                "scheduling_delay", "restarts", "completed_at")
        lines = ["request_id," + ",".join(c if c in ("prefill", "decode", "replica", "restarts") else f"{c}_s"
                                          for c in cols)]
        arrays = [getattr(m, c) for c in cols]
        for i in range(len(m.arrival)):
            lines.append(f"{i}," + ",".join(_fmt(a[i]) for a in arrays))
        return "\n".join(lines) + "\n"

    def timeline_csv(self) -> str:
        """Batch size and KV-cache use over time: one row per batch (a fast-forwarded run is one row)."""
        log = self.output.log
        lines = ["replica,start_s,end_s,iterations,batch_size,prefill_tokens,decode_tokens_per_iteration,"
                 "kv_blocks_used,kv_use"]
        nb = self.output.num_blocks
        for i in range(len(log.start)):
            lines.append(f"{log.replica[i]},{log.start[i]:.6f},{log.end[i]:.6f},{log.iterations[i]},"
                         f"{log.size[i]:.4g},{log.prefill_tokens[i]},{log.decode_tokens[i]:.4g},"
                         f"{log.blocks_used[i]},{log.blocks_used[i] / nb:.4f}")
        return "\n".join(lines) + "\n"

    def chrome_trace(self, max_events: int = 200_000) -> str:
        """Batches per replica as complete events (a fast-forwarded run is one event), plus KV use."""
        log = self.output.log
        ev: list[dict[str, Any]] = []
        for i in range(min(len(log.start), max_events)):
            ts, dur = log.start[i] * 1e6, (log.end[i] - log.start[i]) * 1e6
            kind = "prefill" if log.prefill_tokens[i] and not log.decode_tokens[i] else \
                "mixed" if log.prefill_tokens[i] else "decode"
            ev.append({"name": f"{kind} x{log.size[i]:g}" + (f" ({log.iterations[i]} iters)" if log.iterations[i] > 1 else ""),
                       "cat": kind, "ph": "X", "ts": ts, "dur": dur, "pid": log.replica[i], "tid": 0,
                       "args": {"size": log.size[i], "prefill_tokens": log.prefill_tokens[i],
                                "iterations": log.iterations[i]}})
            ev.append({"name": "kv_blocks", "ph": "C", "ts": ts + dur, "pid": log.replica[i],
                       "args": {"used": log.blocks_used[i]}})
        return json.dumps({"traceEvents": ev, "displayTimeUnit": "ms"})


def _fmt(x: Any) -> str:
    if isinstance(x, (np.floating, float)):
        return "" if np.isnan(x) else f"{float(x):.6g}"
    return str(int(x))


def _num(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    raise TypeError(type(x))


def operator_table(spec: ServeSpec) -> OperatorTable:
    if spec.profile_dir:
        from perfforge.serving.vidur_profiles import read_profile_dir

        return read_profile_dir(spec.profile_dir, model=spec.model, tp=spec.tp, block_size=spec.block_size)
    return model_table(spec.model, spec.hardware, spec.tp, spec.dtype, spec.node, spec.calibration, spec.backend)


def request_set(spec: ServeSpec) -> RequestSet:
    return generate(requests=spec.requests, arrival=spec.arrival, qps=spec.qps, cv=spec.cv, length=spec.length,
                    prefill=spec.prefill, decode=spec.decode, min_tokens=spec.min_tokens, max_tokens=spec.max_tokens,
                    prefill_to_decode_ratio=spec.prefill_to_decode_ratio, zipf_theta=spec.zipf_theta,
                    trace=spec.trace, seed=spec.seed)


def _model_facts(model: str, dtype: DType) -> tuple[int, float, int]:
    """Parameter count, KV-cache bytes per token and the experts' share of the parameters (a mixture of experts;
    0 otherwise), from the model's graph; cached: capacity searches call ``simulate`` many times."""
    from perfforge.workload.decoders import model_key

    return _model_facts_cached(model_key(model), dtype)


@lru_cache(maxsize=64)
def _model_facts_cached(key: str, dtype: DType) -> tuple[int, float, int]:
    from perfforge.workload.decoders import decoder_config, model_of
    from perfforge.workload.models.transformer import build_transformer

    one = build_transformer(decoder_config(model_of(key)), batch=1, seq=8, dtype=dtype)
    experts = sum(op.params for op in one.ops if ".experts." in op.name)
    return one.params, one.kv_cache_bytes(context=1, batch=1), experts


def simulate(spec: ServeSpec, requests: RequestSet | None = None, table: OperatorTable | None = None, *,
             exact: bool = False, vidur_lookups: bool | tuple[str, ...] = ()) -> ServingReport:
    """``exact``: step every iteration (no fast-forward). ``vidur_lookups``: True, or some of
    ``batch_time.VIDUR_LOOKUPS``, to look times up as Vidur 0.0.26 does (comparisons with Vidur only)."""
    from perfforge.system.catalog import get_device
    from perfforge.workload.decoders import decoder_config

    cfg = decoder_config(spec.model)
    if cfg.layers % spec.pp:
        raise ConfigError(f"pp={spec.pp} must divide {spec.model}'s {cfg.layers} layers")
    device = get_device(spec.hardware)
    dtype = DType.parse(spec.dtype)
    params, kv_bytes_per_token, expert_params = _model_facts(spec.model, dtype)
    kv = plan_kv(params=params, layers=cfg.layers, kv_heads=cfg.n_kv_heads, head_dim=cfg.d_head, tp=spec.tp,
                 pp=spec.pp, dtype=dtype, memory_bytes=device.memory_bytes, memory_fraction=spec.memory_fraction,
                 block_size=spec.block_size)
    table = table or operator_table(spec)
    quirks = VIDUR_LOOKUPS if vidur_lookups is True else tuple(vidur_lookups or ())
    timer = StageTimer(table, cfg.layers // spec.pp, spec.tp, spec.pp, vidur_lookups=quirks,
                       gqa=cfg.n_kv_heads < cfg.heads)
    reqs = requests or request_set(spec)
    if int(reqs.total_tokens.max()) > kv.capacity_tokens:
        raise ConfigError(f"a request of {int(reqs.total_tokens.max())} tokens exceeds the KV cache "
                          f"({kv.capacity_tokens} tokens per replica)")
    limits = SchedulerLimits(kv.num_blocks, spec.block_size, spec.max_batch_size, spec.max_tokens_per_batch,
                             spec.chunk_size, spec.max_tokens, spec.watermark_fraction, spec.pp)
    cls = SCHEDULERS.get(spec.scheduler)
    t0 = time.perf_counter()
    def make_scheduler(st: RequestState) -> ReplicaScheduler:
        return cls(st, limits, exact=exact)

    fast_forward = spec.fast_forward and not exact
    split = can_split(spec.routing, spec.replicas)
    core = simulation_core(spec)
    jobs = spec.replica_jobs if split else 1
    if core == "compiled" and spec.routing == "least_outstanding":
        # the replicas run together; as in the Python simulator, no replica knows its future arrivals, even
        # alone (so a fast-forward never runs on through completions)
        out = compiled.simulate_cluster(reqs, timer, make_scheduler, fast_forward, replicas=spec.replicas)
    elif core == "compiled" and spec.replicas == 1:
        out = compiled.simulate_replica(reqs, timer, make_scheduler, fast_forward)
    elif jobs > 1 or core == "compiled":
        out = simulate_split(reqs, timer, make_scheduler, replicas=spec.replicas, routing=spec.routing,
                             seed=spec.seed, fast_forward=fast_forward, jobs=jobs,
                             runner=compiled.simulate_replica if core == "compiled" else python_replica)
    else:
        out = Simulator(reqs, timer, make_scheduler, replicas=spec.replicas, routing=spec.routing,
                        seed=spec.seed, fast_forward=fast_forward).run()
    wall = time.perf_counter() - t0
    devices = spec.tp * spec.pp
    # a token runs the dense weights and top_k of each layer's experts; an iteration reads the dense weights and
    # the experts its tokens reach (summarize)
    dense_params = params - cfg.vocab * cfg.hidden - expert_params
    active_share = cfg.top_k / cfg.num_experts if cfg.num_experts else 0.0
    summary = summarize(
        out, ttft_slo_s=spec.ttft_slo_s, tbt_slo_s=spec.tbt_slo_s,
        flops_per_token=2.0 * (dense_params + expert_params * active_share),
        attn_flops_per_pair=4.0 * cfg.layers * cfg.heads * cfg.d_head,
        weight_bytes=dense_params * dtype.bytes, expert_bytes=expert_params * dtype.bytes,
        experts=cfg.num_experts, top_k=cfg.top_k,
        kv_bytes_per_token=kv_bytes_per_token,
        peak_flop_per_s=device.peak_flop_per_s(dtype), peak_bytes_per_s=device.memory_bytes_per_s,
        devices_per_replica=devices, replicas=spec.replicas)
    summary["replica_jobs"] = jobs
    summary["simulation_core"] = core
    return ServingReport(spec, summary, out, kv, table.source, wall)


def simulation_core(spec: ServeSpec) -> str:
    """Which core simulates ``spec``: "compiled" or "python" (``spec.core``; "auto" picks compiled where
    it applies). Asking for "compiled" where it does not apply is an error that says why."""
    ok = compiled.supports(spec.scheduler)
    if spec.core == "compiled" and not ok:
        raise ConfigError("serve core: 'compiled' cannot run: numba is not installed (pip install numba); "
                          "use core 'auto' or 'python'")
    if spec.core == "python" or not ok:
        return "python"
    return "compiled"
