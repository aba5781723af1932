"""Parsers for other tools' result logs, turned into perfforge ground-truth records.

- ASTRA-sim 2.x prints, per NPU, ``sys[N] finished, T cycles, exposed communication E cycles.`` (its
  workload layer's report line; 1 cycle = 1 ns). ``parse_astrasim_log`` returns one record per NPU.
- MLPerf Training result logs hold ``:::MLLOG {json}`` lines (mlcommons/logging); ``parse_mllog`` returns the
  run's time to train (``run_stop.time_ms - run_start.time_ms``) with the submission metadata.
"""

from __future__ import annotations

import json
import re
from typing import Any

from perfforge.core.errors import ConfigError

_ASTRA = re.compile(
    r"sys\[(?P<npu>\d+)\](?: iteration (?P<it>\d+))? finished, (?P<finish>\d+) cycles"
    r"(?:, exposed communication (?P<exposed>\d+) cycles)?")


def parse_astrasim_log(text: str) -> list[dict[str, Any]]:
    """One record per finished NPU (and iteration, when ASTRA-sim reports iterations)."""
    out = []
    for m in _ASTRA.finditer(text):
        out.append({"kind": "simulator", "tool": "astra-sim", "npu": int(m["npu"]),
                    "iteration": int(m["it"]) if m["it"] else None, "finish_ns": int(m["finish"]),
                    "exposed_comm_ns": int(m["exposed"]) if m["exposed"] else None})
    if not out:
        raise ConfigError("no 'sys[N] finished, T cycles' line in the ASTRA-sim output")
    return out


def parse_mllog(text: str) -> dict[str, Any]:
    """Time to train and metadata of one MLPerf Training run log."""
    events: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {}
    for line in text.splitlines():
        idx = line.find(":::MLLOG")
        if idx < 0:
            continue
        try:
            ev = json.loads(line[idx + len(":::MLLOG"):].strip())
        except json.JSONDecodeError:
            continue  # a truncated line of a killed run
        key = ev.get("key")
        if key in ("run_start", "run_stop"):
            events.setdefault(key, ev)
        elif key in ("submission_benchmark", "submission_org", "submission_platform", "global_batch_size",
                     "submission_division", "train_samples", "eval_accuracy", "epoch_count"):
            meta[key] = ev.get("value")
    if "run_start" not in events or "run_stop" not in events:
        raise ConfigError("MLPerf log has no run_start/run_stop pair")
    stop = events["run_stop"]
    status = (stop.get("metadata") or {}).get("status", "unknown")
    return {"kind": "training_run", "tool": "mlperf", "status": status,
            "time_to_train_s": (stop["time_ms"] - events["run_start"]["time_ms"]) / 1e3, **meta}
