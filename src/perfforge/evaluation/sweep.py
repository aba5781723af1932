"""Parameter sweeps: a grid of scenarios predicted in parallel, appended to a resumable SQLite store.

Every point is keyed by a hash of its scenario; a point already in the store is never recomputed, so an
interrupted sweep resumes where it stopped. Each result is committed in its own transaction (SQLite's
journal makes a killed process leave the store consistent: a row is there whole or not at all).
Executors (``perfforge.evaluation.executors``): local processes (default) or Ray (``executor="ray"``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perfforge.core.errors import ConfigError, PerfforgeError
from perfforge.core.files import first_error, read_yaml
from perfforge.evaluation.executors import EXECUTORS, map_unordered
from perfforge.scenario import Scenario

SCENARIO_FIELDS = set(Scenario.model_fields)


class SweepSpec(BaseModel):
    """``grid`` maps scenario fields to lists of values (cartesian product); ``fixed`` sets the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    grid: dict[str, list[Any]] = Field(min_length=1)
    fixed: dict[str, Any] = {}

    @field_validator("grid", "fixed")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = set(v) - SCENARIO_FIELDS
        if unknown:
            raise ValueError(f"unknown scenario field(s) {sorted(unknown)} (allowed: {', '.join(sorted(SCENARIO_FIELDS))})")
        for key, values in v.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"'{key}' has no values")
        return v

    @model_validator(mode="after")
    def _grid_or_fixed(self) -> "SweepSpec":
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise ValueError(f"{', '.join(both)}: in both grid and fixed; give each field in one of them")
        return self

    def points(self) -> list[dict[str, Any]]:
        keys = sorted(self.grid)
        return [{**self.fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(self.grid[k] for k in keys))]


def load_sweep(path: str | Path) -> SweepSpec:
    try:
        return SweepSpec.model_validate(read_yaml(path, "sweep file"))
    except ValidationError as exc:
        raise ConfigError(first_error(exc, str(path))) from None


def point_key(point: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:24]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, sweep TEXT NOT NULL, point TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    step_time_s REAL, throughput_samples_per_s REAL, throughput_tokens_per_s REAL, mfu REAL,
    memory_bytes REAL, fits INTEGER, host_bound INTEGER, elapsed_s REAL, extra TEXT
)"""
COLUMNS = ("key", "sweep", "point", "status", "error", "step_time_s", "throughput_samples_per_s",
           "throughput_tokens_per_s", "mfu", "memory_bytes", "fits", "host_bound", "elapsed_s", "extra")


class SweepStore:
    """Append-only result store in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a perfforge sweep store ({exc})") from None

    def done_keys(self) -> set[str]:
        """Every point already in the store, whichever sweep computed it (a point's key is its scenario)."""
        return {k for (k,) in self._db.execute("SELECT key FROM results")}

    def rows_for(self, keys: list[str]) -> list[dict[str, Any]]:
        """The stored rows of these points, in the order given (a sweep's report: its points, also those another
        sweep sharing the store computed first)."""
        by_key = {r["key"]: r for r in self.rows()}
        return [by_key[k] for k in keys if k in by_key]

    def add(self, row: dict[str, Any]) -> None:
        with self._db:  # one transaction per row: all of it or none of it
            self._db.execute(f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             [row.get(c) for c in COLUMNS])

    def rows(self, sweep: str | None = None) -> list[dict[str, Any]]:
        query = f"SELECT {', '.join(COLUMNS)} FROM results" + (" WHERE sweep = ?" if sweep else "") + " ORDER BY rowid"
        out = []
        for values in self._db.execute(query, (sweep,) if sweep else ()):
            row = dict(zip(COLUMNS, values))
            row["point"] = json.loads(row["point"])
            row["extra"] = json.loads(row["extra"]) if row["extra"] else {}
            out.append(row)
        return out

    def close(self) -> None:
        self._db.close()


def evaluate_point(sweep: str, point: dict[str, Any]) -> dict[str, Any]:
    """Predict one point; a bad point becomes an error row, not an exception (the sweep goes on)."""
    from perfforge.api import run_scenario
    from perfforge.scenario import make_scenario

    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": point_key(point), "sweep": sweep, "point": json.dumps(point, sort_keys=True, default=str)}
    try:
        res = run_scenario(make_scenario(**point))
        row.update(status="ok", step_time_s=res.step_time_s, throughput_samples_per_s=res.throughput_samples_per_s,
                   throughput_tokens_per_s=res.throughput_tokens_per_s, mfu=res.mfu, memory_bytes=res.memory_bytes,
                   fits=int(res.fits), host_bound=int(res.host_bound),
                   extra=json.dumps({k: v for k, v in res.extra.items() if isinstance(v, (int, float, str))}))
    except (PerfforgeError, ValueError) as exc:
        row.update(status="error", error=str(exc))
    row["elapsed_s"] = time.perf_counter() - t0
    return row


def _evaluate_batch(sweep: str, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [evaluate_point(sweep, p) for p in points]


@dataclass(frozen=True)
class SweepSummary:
    total: int
    skipped: int
    computed: int
    errors: int
    wall_s: float


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _evaluate_chunk(args: tuple[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return _evaluate_batch(*args)


def run_sweep(spec: SweepSpec, store: SweepStore, *, executor: str = "local", jobs: int = 2, chunk: int = 8,
              progress: Callable[[int, int], None] | None = None) -> SweepSummary:
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}' (allowed: {', '.join(EXECUTORS)})")
    points = spec.points()
    done = store.done_keys()
    pending = [p for p in points if point_key(p) not in done]
    t0 = time.perf_counter()
    computed = errors = 0
    work = [(spec.name, batch) for batch in _chunks(pending, chunk)]
    for rows in map_unordered(_evaluate_chunk, work, executor=executor, jobs=jobs):
        for row in rows:
            store.add(row)  # committed one by one: an interruption keeps every finished row
            computed += 1
            errors += row["status"] != "ok"
        if progress:
            progress(computed, len(pending))
    return SweepSummary(len(points), len(points) - len(pending), computed, errors, time.perf_counter() - t0)
