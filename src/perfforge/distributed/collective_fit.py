"""Fit the collective model's two calibration constants to measured NCCL all-reduce times.

perfforge times an all-reduce inside one node as ``launch + ring(size)``, where the ring costs
``2(n-1) x (step_latency + size / n / (link_bandwidth x efficiency))`` (``perfforge.distributed.collectives``).
``efficiency`` (the share of the datasheet link bandwidth NCCL reaches) and ``launch`` (a fixed cost per
collective call: kernel launch, the ranks' handshake, protocol set-up) are what a calibration sets; both enter
linearly, so the fit is a weighted least-squares on relative error, no search.

Ground truth: Vidur's NCCL all-reduce profiles (microsoft/vidur ``vidur/profiling/collectives``: fp16 buffers,
``size`` written in bytes, median NCCL kernel time from the PyTorch profiler), loaded by
``perfforge.evaluation.vidur.read_collectives``. Only single-node groups are fitted: Vidur's two-node rows reach
5-18 GB/s per GPU over what should be 8 x 200 Gb/s HDR, far below what the network can carry, so they describe
that profiling setup's network path rather than InfiniBand (reported, not fitted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from perfforge.core.errors import ConfigError
from perfforge.distributed.collectives import collective_time
from perfforge.distributed.topology import Dimension, Topology


@dataclass(frozen=True, slots=True)
class CollectiveFit:
    efficiency: float       # share of link bandwidth
    launch_s: float         # fixed cost per collective call
    cases: int
    mape: float             # mean |pred/meas - 1| over the fitted cases
    mape_large: float       # the same over messages of at least 1 MiB (DDP buckets, TP activations)


LARGE_BYTES = 2**20


def intra_node_allreduce(records: Iterable[Mapping[str, Any]], node: str) -> list[tuple[int, float, float]]:
    """(GPUs, bytes, seconds) of one Vidur node's single-node all-reduce rows."""
    out = []
    for r in records:
        p = r["params"]
        if (r["op"] == "all_reduce" and r["device"]["name"] == node and p["workers"] == p["devices_per_node"]
                and p["workers"] > 1):
            out.append((int(p["workers"]), float(p["size_bytes"]), float(r["latency_s"])))
    return out


def fit_allreduce(cases: list[tuple[int, float, float]], *, bytes_per_s: float, step_latency_s: float,
                  kind: str = "switch") -> CollectiveFit:
    """Least-squares (relative error) fit of ``efficiency`` and ``launch_s`` to (GPUs, bytes, seconds) cases."""
    if len(cases) < 2:
        raise ConfigError(f"need at least 2 measured all-reduce cases to fit, got {len(cases)}")
    if bytes_per_s <= 0 or step_latency_s < 0:
        raise ConfigError("link bandwidth must be > 0 and step latency >= 0")
    n = np.array([c[0] for c in cases], dtype=float)
    size = np.array([c[1] for c in cases])
    meas = np.array([c[2] for c in cases])
    if (meas <= 0).any() or (size <= 0).any():
        raise ConfigError("measured all-reduce cases need positive sizes and times")
    # t = launch + 2(n-1) * step_latency + [2(n-1)/n * size / bw] * (1 / efficiency)
    fixed = 2 * (n - 1) * step_latency_s
    a = np.stack([np.ones_like(size), 2 * (n - 1) / n * size / bytes_per_s], axis=1)
    w = 1.0 / meas
    (launch, inv_eff), *_ = np.linalg.lstsq(a * w[:, None], (meas - fixed) * w, rcond=None)
    if inv_eff <= 0:
        raise ConfigError("the fit found no bandwidth term (all cases latency-bound?)")
    eff = min(1.0, 1.0 / inv_eff)
    launch = max(0.0, float(launch))
    pred = np.array([predict_allreduce(int(k), s, bytes_per_s=bytes_per_s, step_latency_s=step_latency_s,
                                       efficiency=eff, launch_s=launch, kind=kind) for k, s in zip(n, size)])
    err = np.abs(pred / meas - 1)
    large = size >= LARGE_BYTES
    return CollectiveFit(round(eff, 3), round(launch, 7), len(cases), float(err.mean()),
                         float(err[large].mean()) if large.any() else float("nan"))


def predict_allreduce(gpus: int, size: float, *, bytes_per_s: float, step_latency_s: float, efficiency: float,
                      launch_s: float, kind: str = "switch") -> float:
    """perfforge's own all-reduce time for one node group (the function the distributed engine uses)."""
    topo = Topology((Dimension("node", kind, gpus, bytes_per_s, step_latency_s),))  # type: ignore[arg-type]
    return collective_time("all_reduce", size, topo, efficiency=efficiency, launch_s=launch_s)
