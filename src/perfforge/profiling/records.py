"""Measurement records (schema ``perfforge.measurement/1``) and crash-safe JSONL I/O.

Standard library only. One JSON object per line; ``append_jsonl`` fsyncs each record so an
interrupted run leaves a valid file, and ``read_jsonl`` ignores a torn last line.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "perfforge.measurement/1"
SOURCE = "perfforge profile (own measurement)"

# Fields dropped from the JSON object when they are None (a failed case has no latency).
_OPTIONAL = {
    "latency_s",
    "latency_p10_s",
    "latency_p90_s",
    "throughput_per_s",
    "flop",
    "bytes",
    "achieved_flop_per_s",
    "achieved_bytes_per_s",
    "peak_memory_bytes",
    "error",
}


def _fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def make_key(kind: str, op: str, dtype: str, params: Mapping[str, Any]) -> str:
    """Stable identity of a measurement: ``kind/op/dtype/k1=v1,k2=v2`` with sorted params."""
    body = ",".join(f"{k}={_fmt_value(params[k])}" for k in sorted(params))
    return f"{kind}/{op}/{dtype}/{body}"


def group_on_device(group: str, suite: str, suites: Iterable[str], dev: Any, *, needs: str, tiny: str) -> bool:
    """Admit a named profiler group's ``suite`` on ``dev``: a known suite, and a GPU for any but ``tiny``
    (``needs`` says what the suite runs, ``tiny`` what the tiny one does instead). Returns whether ``dev`` is CUDA."""
    suites = list(suites)
    if suite not in suites:
        raise ValueError(f"unknown suite {suite!r} (choose from {', '.join(suites)})")
    cuda = getattr(dev, "type", "cpu") == "cuda"
    if not cuda and suite != "tiny":
        from perfforge.core.errors import ConfigError

        raise ConfigError(f"--only {group} --suite {suite} {needs}: run it on a GPU (on a CPU, --suite tiny {tiny})")
    return cuda


def utc_now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Measurement:
    """One measured (or failed) case. ``error`` set means no latency fields."""

    key: str
    kind: str  # "kernel" | "model"
    op: str
    params: dict[str, Any]
    dtype: str
    repeats: int = 0
    warmup: int = 0
    timer: str = "wall"  # "cuda_event" | "wall"
    l2_flush: bool = False
    latency_s: float | None = None
    latency_p10_s: float | None = None
    latency_p90_s: float | None = None
    throughput_per_s: float | None = None
    flop: float | None = None
    bytes: float | None = None
    achieved_flop_per_s: float | None = None
    achieved_bytes_per_s: float | None = None
    peak_memory_bytes: int | None = None
    group: str = ""  # "ceilings" | "models" | "kernels"
    suite: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    software: dict[str, Any] = field(default_factory=dict)
    date: str = field(default_factory=utc_now_iso)
    run_id: str = ""
    source: str = SOURCE
    error: str | None = None
    schema: str = SCHEMA

    @property
    def ok(self) -> bool:
        return self.error is None and self.latency_s is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        out: dict[str, Any] = {"schema": data.pop("schema")}
        for name, value in data.items():
            if value is None and name in _OPTIONAL:
                continue
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        names = {f.name for f in fields(cls)}
        missing = {"key", "kind", "op", "params", "dtype"} - set(data)
        if missing:
            raise ValueError(f"measurement record lacks {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def read_jsonl(path: str | os.PathLike[str]) -> list[Measurement]:
    """Read records; a missing file is empty, a torn (unparsable) last line is ignored."""
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text(encoding="utf-8").splitlines()
    records: list[Measurement] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(Measurement.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            if i != len(lines) - 1:
                warnings.warn(f"{p}:{i + 1}: skipping bad record ({exc})", stacklevel=2)
    return records


def append_jsonl(path: str | os.PathLike[str], records: Iterable[Measurement]) -> None:
    """Append records, flushing and fsyncing after each one.

    If the file ends in a torn line (no trailing newline), a newline is written first so the
    next record starts on its own line and the fragment stays an ignorable bad line.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = False
    if p.exists() and p.stat().st_size > 0:
        with p.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            needs_newline = fh.read(1) != b"\n"
    with p.open("a", encoding="utf-8") as fh:
        if needs_newline:
            fh.write("\n")
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), sort_keys=False, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
