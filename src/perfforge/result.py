"""Result: what every engine returns. Totals, a per-op breakdown with a timeline, memory, coverage, provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One op's share of the step. ``start_s`` places it on the device's stream (timeline)."""

    name: str
    kind: str
    layer: str
    phase: str
    time_s: float
    flops: float
    bytes: float
    bound: str
    start_s: float = 0.0
    stream: str = "compute"


@dataclass(frozen=True, slots=True)
class MemoryFootprint:
    """Per-device memory in bytes, and whether it fits the usable capacity."""

    weights: float
    gradients: float
    optimizer_states: float
    activations: float
    kv_cache: float
    overhead: float
    capacity: float
    usable: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer_states + self.activations + self.kv_cache + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.usable

    def to_dict(self) -> dict[str, float | bool]:
        out: dict[str, float | bool] = {k: getattr(self, k) for k in self.__slots__}
        out["total"] = self.total
        out["fits"] = self.fits
        return out


@dataclass(frozen=True)
class Result:
    model: str
    hardware: str
    engine: str
    mode: str
    dtype: str
    batch: int
    seq: int
    step_time_s: float
    samples_per_step: int
    tokens_per_step: int
    params: int
    flops_per_step: float
    model_flops_per_step: float     # useful FLOPs (no recomputation), the MFU numerator
    peak_flop_per_s: float
    memory: MemoryFootprint
    breakdown: tuple[OpRecord, ...]
    unmodelled: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    host_time_s: float = 0.0        # CPU time to issue the step's ops (eager execution)
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific totals (e.g. exposed communication)

    @property
    def host_bound(self) -> bool:
        """True when the device waits on the host: the step takes the host's issue time."""
        return self.host_time_s > sum(r.time_s for r in self.breakdown if r.stream == "compute")

    @property
    def throughput_samples_per_s(self) -> float:
        return self.samples_per_step / self.step_time_s if self.step_time_s else 0.0

    @property
    def throughput_tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s if self.step_time_s else 0.0

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation: useful FLOPs per second over the device's dense peak for the dtype."""
        if not self.step_time_s or not self.peak_flop_per_s:
            return 0.0
        return self.model_flops_per_step / self.step_time_s / self.peak_flop_per_s

    @property
    def memory_bytes(self) -> float:
        return self.memory.total

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def group_by(self, attr: str) -> list[dict[str, Any]]:
        """Sum time, FLOPs and bytes by an ``OpRecord`` attribute (``kind``, ``layer``, ``phase``), largest first."""
        groups: dict[str, dict[str, Any]] = {}
        for rec in self.breakdown:
            key = getattr(rec, attr)
            g = groups.setdefault(key, {attr: key, "time_s": 0.0, "flops": 0.0, "bytes": 0.0, "ops": 0})
            g["time_s"] += rec.time_s
            g["flops"] += rec.flops
            g["bytes"] += rec.bytes
            g["ops"] += 1
        return sorted(groups.values(), key=lambda g: -g["time_s"])

    def to_dict(self, *, with_breakdown: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model, "hardware": self.hardware, "engine": self.engine, "mode": self.mode,
            "dtype": self.dtype, "batch": self.batch, "seq": self.seq,
            "step_time_s": self.step_time_s,
            "throughput_samples_per_s": self.throughput_samples_per_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "params": self.params, "flops_per_step": self.flops_per_step,
            "model_flops_per_step": self.model_flops_per_step, "mfu": self.mfu,
            "memory_bytes": self.memory_bytes, "fits": self.fits, "memory": self.memory.to_dict(),
            "host_time_s": self.host_time_s, "host_bound": self.host_bound,
            "by_kind": self.group_by("kind"), "by_phase": self.group_by("phase"),
            "unmodelled": list(self.unmodelled), "provenance": self.provenance, **self.extra,
        }
        if with_breakdown:
            out["breakdown"] = [
                {"name": r.name, "kind": r.kind, "layer": r.layer, "phase": r.phase, "time_s": r.time_s,
                 "flops": r.flops, "bytes": r.bytes, "bound": r.bound, "start_s": r.start_s}
                for r in self.breakdown
            ]
        return out

    def to_chrome_trace(self) -> dict[str, Any]:
        """Chrome trace-event JSON (opens in Perfetto / chrome://tracing); times in microseconds."""
        events = [
            {"name": r.name, "cat": f"{r.kind},{r.phase}", "ph": "X", "pid": 0, "tid": r.stream,
             "ts": r.start_s * 1e6, "dur": r.time_s * 1e6,
             "args": {"flops": r.flops, "bytes": r.bytes, "bound": r.bound, "layer": r.layer}}
            for r in self.breakdown
        ]
        meta = {"name": "process_name", "ph": "M", "pid": 0, "args": {"name": f"{self.model} on {self.hardware}"}}
        return {"traceEvents": [meta, *events], "displayTimeUnit": "ms"}

    def to_json(self, **kwargs: Any) -> str:
        from perfforge.core.files import dumps_json

        return dumps_json(self.to_dict(**kwargs), indent=2, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if hasattr(obj, "value"):
        return obj.value
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
