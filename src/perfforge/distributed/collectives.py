"""Collective communication costs: algorithms per dimension, composed hierarchically across dimensions.

Each algorithm is a pure function ``(collective, size_bytes, dim, efficiency) -> seconds`` for one dimension,
where ``size_bytes`` is the per-NPU buffer (the full vector for all-reduce, the gathered output for
all-gather, the input for reduce-scatter, the whole send buffer for all-to-all). Costs follow the usual
alpha-beta forms (Thakur et al. 2005, "Optimization of Collective Communication Operations in MPICH"):

    ring:               all-reduce 2(n-1) steps of S/n;   all-gather / reduce-scatter / all-to-all n-1 steps
    direct:             one step per phase; every byte leaves through the NPU's own port
    halving_doubling:   2 log2(n) steps, same bytes as ring (n a power of two)
    double_binary_tree: 2 log2(n) steps, S per direction (two trees each carry half, NCCL's tree)

``efficiency`` is the share of link bandwidth a collective library achieves and ``launch_s`` a fixed cost per
collective call (kernel launch, the ranks' handshake), both calibration constants fitted to measured NCCL
all-reduces (``perfforge.distributed.collective_fit``). Multi-dimensional
all-reduce is reduce-scatter inward-out, all-reduce on the outermost dimension, then all-gather back
(hierarchical, as ASTRA-sim and NCCL's tree/ring hierarchy do); each dimension uses its own algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from perfforge.core.errors import ConfigError
from perfforge.core.registry import Registry
from perfforge.distributed.topology import Dimension, Topology

Collective = Literal["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"]
COLLECTIVES_NAMES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")
AlgorithmFn = Callable[[str, float, Dimension, float], float]
ALGORITHMS: Registry[AlgorithmFn] = Registry("collective algorithm")


def _check(collective: str, size: float) -> None:
    if collective not in COLLECTIVES_NAMES:
        raise ConfigError(f"unknown collective '{collective}' (allowed: {', '.join(COLLECTIVES_NAMES)})")
    if size < 0:
        raise ConfigError(f"collective size must be >= 0 bytes, got {size}")


def _p2p(size: float, dim: Dimension, eff: float) -> float:
    return dim.latency_s + size / (dim.bytes_per_s * eff)


def _algorithm(name: str) -> Callable[[Callable[[str, float, Dimension, float], float]], AlgorithmFn]:
    """Register an algorithm; the wrapper validates input and handles the cases every algorithm shares
    (a one-member dimension or an empty buffer costs nothing; point-to-point is one latency plus bytes/bw).
    The body receives the effective bandwidth ``bw`` (link bandwidth x efficiency)."""

    def wrap(body: Callable[[str, float, Dimension, float], float]) -> AlgorithmFn:
        def algorithm(collective: str, size: float, dim: Dimension, eff: float) -> float:
            _check(collective, size)
            if dim.npus == 1 or size == 0:
                return 0.0
            if collective == "p2p":
                return _p2p(size, dim, eff)
            return body(collective, size, dim, dim.bytes_per_s * eff)

        algorithm.__name__ = algorithm.__qualname__ = body.__name__
        algorithm.__doc__ = body.__doc__
        ALGORITHMS.add(name, algorithm)
        return algorithm

    return wrap


@_algorithm("ring")
def ring(collective: str, size: float, dim: Dimension, bw: float) -> float:
    n = dim.npus
    steps = 2 * (n - 1) if collective == "all_reduce" else n - 1
    return steps * (dim.latency_s + size / n / bw)


@_algorithm("direct")
def direct(collective: str, size: float, dim: Dimension, bw: float) -> float:
    n = dim.npus
    phases = 2 if collective == "all_reduce" else 1
    if dim.kind == "fully_connected":
        # n-1 dedicated links carry the n-1 pieces at once: one piece's time per phase
        return phases * (dim.latency_s + size / n / bw)
    return phases * (dim.latency_s + (n - 1) / n * size / bw)


@_algorithm("halving_doubling")
def halving_doubling(collective: str, size: float, dim: Dimension, bw: float) -> float:
    n = dim.npus
    if n & (n - 1):
        raise ConfigError(f"halving_doubling needs a power-of-two dimension, got {n} NPUs")
    if collective == "all_to_all":  # no halving form: the ring schedule
        return (n - 1) * (dim.latency_s + size / n / bw)
    phases = 2 if collective == "all_reduce" else 1
    return phases * (int(math.log2(n)) * dim.latency_s + (n - 1) / n * size / bw)


@_algorithm("double_binary_tree")
def double_binary_tree(collective: str, size: float, dim: Dimension, bw: float) -> float:
    n = dim.npus
    if collective != "all_reduce":  # NCCL runs trees for all-reduce only: the ring schedule otherwise
        return (n - 1) * (dim.latency_s + size / n / bw)
    return 2 * math.ceil(math.log2(n)) * dim.latency_s + size / bw


def collective_time(collective: str, size: float, topology: Topology, *, algorithms: dict[str, str] | None = None,
                    efficiency: float = 1.0, launch_s: float = 0.0) -> float:
    """Seconds for one collective over every active dimension, composed hierarchically, plus ``launch_s``
    once per call (a group of one, or an empty buffer, launches nothing and costs 0)."""
    _check(collective, size)
    if not 0 < efficiency <= 1:
        raise ConfigError(f"collective efficiency must be in (0, 1], got {efficiency}")
    if launch_s < 0:
        raise ConfigError(f"collective launch time must be >= 0 s, got {launch_s}")
    dims = topology.active()
    if not dims or size == 0:
        return 0.0
    return launch_s + _composed(collective, size, dims, algorithms, efficiency)


def _composed(collective: str, size: float, dims: tuple[Dimension, ...], algorithms: dict[str, str] | None,
              efficiency: float) -> float:
    algo = {d.name: ALGORITHMS.get((algorithms or {}).get(d.name, "ring")) for d in dims}
    if collective == "p2p":
        return _p2p(size, dims[-1], efficiency)
    if collective == "all_reduce":
        total, part = 0.0, size
        for d in dims[:-1]:
            total += algo[d.name]("reduce_scatter", part, d, efficiency) + algo[d.name]("all_gather", part, d, efficiency)
            part /= d.npus
        return total + algo[dims[-1].name]("all_reduce", part, dims[-1], efficiency)
    # all-gather, reduce-scatter, all-to-all: each dimension handles its share of the buffer in turn
    total, part = 0.0, size
    for d in dims:
        total += algo[d.name](collective, part, d, efficiency)
        part /= d.npus
    return total


def bytes_sent_per_npu(collective: str, size: float, n: int) -> float:
    """Bytes each NPU sends in a bandwidth-optimal schedule (ring all-reduce: 2(n-1)/n * S)."""
    _check(collective, size)
    if n <= 1:
        return 0.0
    factor = {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n, "reduce_scatter": (n - 1) / n,
              "all_to_all": (n - 1) / n, "p2p": 1.0}[collective]
    return factor * size
