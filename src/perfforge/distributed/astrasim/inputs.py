"""ASTRA-sim input files: the 1.0 text workload, the analytical backend's network YAML, the system JSON.

Loaders are strict where ASTRA-sim is lenient: an unknown system key is an error naming the allowed keys
(ASTRA-sim silently falls back to defaults), and every value is range-checked.
Units as ASTRA-sim reads them: network bandwidth in GB/s with 1 GB = 2^30 bytes, latency in ns,
``local-mem-bw`` in bytes per ns (its "GB/s"), ``endpoint-delay`` in ns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from perfforge.core.errors import ConfigError
from perfforge.core.files import read_json_object, read_yaml

COMM_TYPES = ("NONE", "ALLREDUCE", "ALLGATHER", "REDUCESCATTER", "ALLTOALL")
GIB = 2**30


@dataclass(frozen=True, slots=True)
class TextLayer:
    name: str
    fwd_compute: int
    fwd_comm_type: str
    fwd_comm_bytes: int
    ig_compute: int
    ig_comm_type: str
    ig_comm_bytes: int
    wg_compute: int
    wg_comm_type: str
    wg_comm_bytes: int
    wg_update_delay: int


@dataclass(frozen=True, slots=True)
class TextWorkload:
    parallelism: str
    layers: tuple[TextLayer, ...]


def read_text_workload(path: str | Path) -> TextWorkload:
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise ConfigError(f"workload file not found: {p}") from None
    if len(lines) < 2:
        raise ConfigError(f"{p}: expected a parallelism line, a layer count and one line per layer")
    parallelism = lines[0].split()[0]
    if parallelism != "DATA":
        raise ConfigError(f"{p}: parallelism '{parallelism}' is not supported yet (supported: DATA)")
    try:
        count = int(lines[1].split()[0])
    except ValueError:
        raise ConfigError(f"{p}: line 2 must be the number of layers, got {lines[1]!r}") from None
    layers = []
    for i, line in enumerate(lines[2:2 + count], start=3):
        cols = line.split()
        if len(cols) != 12:
            raise ConfigError(f"{p}: line {i}: expected 12 columns (name, reserved, fwd compute/comm type/bytes, "
                              f"ig compute/comm type/bytes, wg compute/comm type/bytes, update delay), got {len(cols)}")
        try:
            nums = [int(cols[k]) for k in (2, 4, 5, 7, 8, 10, 11)]
        except ValueError:
            raise ConfigError(f"{p}: line {i}: compute, bytes and delay columns must be integers") from None
        for k in (3, 6, 9):
            if cols[k] not in COMM_TYPES:
                raise ConfigError(f"{p}: line {i}: unknown comm type '{cols[k]}' (allowed: {', '.join(COMM_TYPES)})")
        if min(nums) < 0:
            raise ConfigError(f"{p}: line {i}: negative compute time or size")
        layers.append(TextLayer(cols[0], nums[0], cols[3], nums[1], nums[2], cols[6], nums[3], nums[4], cols[9],
                                nums[5], nums[6]))
    if len(layers) != count:
        raise ConfigError(f"{p}: header says {count} layers, found {len(layers)}")
    return TextWorkload(parallelism, tuple(layers))


TopologyName = Literal["Ring", "Switch", "FullyConnected"]


@dataclass(frozen=True, slots=True)
class NetworkDim:
    topology: TopologyName
    npus: int
    bytes_per_ns: float
    latency_ns: float


def _number(value: object, field: str, where: str | Path, *, integer: bool = False) -> float:
    """A numeric field of an input file; anything else (text, 8.5 NPUs, a boolean) is a ConfigError naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer and float(value) != int(value):
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: {field} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def read_network(path: str | Path) -> tuple[NetworkDim, ...]:
    data = read_yaml(path, "network file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with topology, npus_count, bandwidth, latency")
    keys = ("topology", "npus_count", "bandwidth", "latency")
    unknown = set(data) - set(keys)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(keys)})")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {missing}")
    lists = [data[k] if isinstance(data[k], list) else [data[k]] for k in keys]
    if len({len(x) for x in lists}) != 1:
        raise ConfigError(f"{path}: topology, npus_count, bandwidth and latency must list one value per dimension")
    dims = []
    for topo, npus, bw, lat in zip(*lists):
        if topo not in ("Ring", "Switch", "FullyConnected"):
            raise ConfigError(f"{path}: topology '{topo}' (allowed: Ring, Switch, FullyConnected)")
        npus = _number(npus, "npus_count", path, integer=True)
        bw, lat = _number(bw, "bandwidth", path), _number(lat, "latency", path)
        if npus < 1 or bw <= 0 or lat < 0:
            raise ConfigError(f"{path}: npus_count >= 1, bandwidth > 0 and latency >= 0 are required")
        dims.append(NetworkDim(topo, int(npus), bw * GIB / 1e9, lat))
    return tuple(dims)


SYSTEM_KEYS = {
    "scheduling-policy", "endpoint-delay", "active-chunks-per-dimension", "preferred-dataset-splits",
    "all-reduce-implementation", "all-gather-implementation", "reduce-scatter-implementation",
    "all-to-all-implementation", "collective-optimization", "local-mem-bw", "boost-mode", "peak-perf",
    "roofline-enabled", "intra-dimension-scheduling", "inter-dimension-scheduling", "trace-enabled", "replay-only",
    "local-reduction-delay",
}


@dataclass(frozen=True, slots=True)
class SystemConfig:
    scheduling_policy: str
    endpoint_delay_ns: float
    active_chunks_per_dimension: int
    splits: int
    all_reduce: tuple[str, ...]
    local_mem_bw: float  # bytes per ns; 0 disables the reduction's memory cost


def read_system(path: str | Path) -> SystemConfig:
    p = Path(path)
    data = read_json_object(p, "system file")
    unknown = set(data) - SYSTEM_KEYS
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {sorted(unknown)} (allowed: {', '.join(sorted(SYSTEM_KEYS))})")
    if data.get("scheduling-policy", "LIFO") not in ("LIFO", "FIFO"):
        raise ConfigError(f"{p}: scheduling-policy must be LIFO or FIFO")
    active = int(_number(data.get("active-chunks-per-dimension", 1), "active-chunks-per-dimension", p, integer=True))
    if active != 1:
        raise ConfigError(f"{p}: active-chunks-per-dimension {active} is not supported yet (supported: 1)")
    splits = int(_number(data.get("preferred-dataset-splits", 1), "preferred-dataset-splits", p, integer=True))
    if splits < 1:
        raise ConfigError(f"{p}: preferred-dataset-splits must be >= 1")
    impl = data.get("all-reduce-implementation", ["ring"])
    impl = tuple(impl if isinstance(impl, list) else [impl])
    for name in impl:
        if name not in ("ring", "direct"):
            raise ConfigError(f"{p}: all-reduce-implementation '{name}' is not supported yet (supported: ring, direct)")
    return SystemConfig(data.get("scheduling-policy", "LIFO"), _number(data.get("endpoint-delay", 10), "endpoint-delay", p),
                        active, splits, impl, _number(data.get("local-mem-bw", 0) or 0, "local-mem-bw", p))
