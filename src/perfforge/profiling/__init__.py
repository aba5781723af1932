"""perfforge's own ground-truth profiler: kernel, ceiling and whole-model measurements.

Importing this package needs only the standard library; torch, torchvision and transformers
are imported lazily when a profile runs. Run it with ``python -m perfforge.profiling``.
"""

from __future__ import annotations

from perfforge.profiling.records import (
    SCHEMA,
    SOURCE,
    Measurement,
    append_jsonl,
    make_key,
    read_jsonl,
)
from perfforge.profiling.runner import ProfileSummary, build_cases, run_profile
from perfforge.profiling.timing import Case, TimingPlan, TimingResult, time_callable

__all__ = [
    "SCHEMA",
    "SOURCE",
    "Case",
    "Measurement",
    "ProfileSummary",
    "TimingPlan",
    "TimingResult",
    "append_jsonl",
    "build_cases",
    "make_key",
    "read_jsonl",
    "run_profile",
    "time_callable",
]
