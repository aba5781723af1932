"""Registry of accuracy and speed claims other performance-modelling tools make about themselves.

Each claim is recorded exactly as its source states it (metric, value, unit, scope, verbatim quote) so that
perfforge can later measure it: a paper's number is a hypothesis, not a fact. ``judge`` compares one of our
measurements with a claim; it never fetches or computes anything itself.
"""

from __future__ import annotations

import math
import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from perfforge.core.errors import ConfigError
from perfforge.core.files import read_yaml

SCHEMA = "perfforge.claims/1"
_KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"

Metric = Literal[
    "mape", "max_error", "mean_error", "geomean_error", "error_vs_measured",
    "share_within_10pct", "accuracy", "speedup", "runtime", "throughput",
]
#: Errors of the tool against ground truth, in percent: lower is better.
ERROR_METRICS = frozenset({"mape", "max_error", "mean_error", "geomean_error", "error_vs_measured"})
#: Higher is better: a share of cases within a bound, an agreement score, a speedup, a throughput.
HIGHER_IS_BETTER = frozenset({"share_within_10pct", "accuracy", "speedup", "throughput"})
#: Lower is better: wall-clock time the tool needs.
LOWER_IS_BETTER = frozenset({"runtime"})
SPEED_METRICS = frozenset({"speedup", "runtime", "throughput"})
_PERCENT_METRICS = ERROR_METRICS | {"share_within_10pct", "accuracy"}
_TIME_UNITS = frozenset({"ms", "s", "min", "h"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(_Frozen):
    """Where the claim comes from; ``url`` or ``commit`` must let a reader find the quote again."""

    title: str = Field(min_length=1)
    authors: str = Field(min_length=1)
    year: int | None = None
    venue: str = Field(min_length=1)
    location: str = Field(min_length=1, description="Abstract, Table N, Section N, or a file path and heading")
    url: str | None = None
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")

    @model_validator(mode="after")
    def _findable(self) -> Citation:
        if not (self.url or self.commit):
            raise ValueError("needs a url or a commit")
        return self


class ClaimScope(_Frozen):
    """What a claim applies to; a number without its scope cannot be tested."""

    hardware: tuple[str, ...] = Field(min_length=1)
    workload: tuple[str, ...] = Field(min_length=1)
    setting: str = Field(min_length=1)


class Claim(_Frozen):
    """One number a tool's authors state about the tool's own accuracy or speed."""

    id: str = Field(pattern=_KEBAB)
    tool: str = Field(pattern=_KEBAB)
    kind: Literal["accuracy", "speed"]
    metric: Metric
    value: float = Field(ge=0)
    unit: str = Field(min_length=1)
    scope: ClaimScope
    baseline: str | None = None
    citation: Citation
    quote: str = Field(min_length=1, max_length=300)
    verified: bool
    testable_with: str = Field(min_length=1)
    note: str | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Claim:
        if (self.metric in SPEED_METRICS) != (self.kind == "speed"):
            raise ValueError(f"metric '{self.metric}' does not fit kind '{self.kind}'")
        if self.metric in _PERCENT_METRICS and self.unit != "percent":
            raise ValueError(f"metric '{self.metric}' needs unit 'percent', got '{self.unit}'")
        if self.metric == "speedup" and self.unit != "x":
            raise ValueError(f"metric 'speedup' needs unit 'x', got '{self.unit}'")
        if self.metric == "runtime" and self.unit not in _TIME_UNITS:
            raise ValueError(f"metric 'runtime' needs a time unit {sorted(_TIME_UNITS)}, got '{self.unit}'")
        if not self.verified and not self.note:
            raise ValueError("an unverified claim needs a note saying what could not be verified")
        return self


class Verdict(str, Enum):
    """Outcome of testing a claim against our own measurement."""

    CONFIRMED = "confirmed"
    CONTRADICTED = "contradicted"
    NOT_TESTABLE = "not_testable"


def judge(claim: Claim, our_value: float | None, *, tolerance: float) -> Verdict:
    """Compare our measurement of the claimed quantity with the claim.

    ``our_value`` must be in the claim's own metric and unit (for an error metric: our measured error of
    *the tool's* predictions, in percent). ``tolerance`` is relative slack (0.1 = 10 %) granted to the claim.

    - ``not_testable`` when ``our_value`` is None;
    - error metrics (mape, max_error, mean_error, geomean_error, error_vs_measured): ``confirmed`` when
      ``our_value <= value * (1 + tolerance)``;
    - share_within_10pct, accuracy, speedup, throughput: ``confirmed`` when ``our_value >= value * (1 - tolerance)``;
    - runtime: ``confirmed`` when ``our_value <= value * (1 + tolerance)``;
    - otherwise ``contradicted``.
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if our_value is None:
        return Verdict.NOT_TESTABLE
    if claim.metric in HIGHER_IS_BETTER:
        ok = our_value >= claim.value * (1 - tolerance)
    elif claim.metric in ERROR_METRICS or claim.metric in LOWER_IS_BETTER:
        ok = our_value <= claim.value * (1 + tolerance)
    else:  # pragma: no cover - Metric is a closed Literal; every member belongs to one family
        raise ValueError(f"no rule for metric '{claim.metric}'")
    return Verdict.CONFIRMED if ok else Verdict.CONTRADICTED


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load_claims(path: str | Path) -> list[Claim]:
    """Read and validate a claims file; any problem raises ``ConfigError`` naming the entry and field."""
    p = Path(path)
    data: Any = read_yaml(p, "claims file")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping with 'schema' and 'claims'")
    extra = sorted(set(data) - {"schema", "claims"})
    if extra:
        raise ConfigError(f"{p}: unknown top-level field(s): {', '.join(map(str, extra))}")
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"{p}: schema must be '{SCHEMA}', got {data.get('schema')!r}")
    if not isinstance(data.get("claims"), list):
        raise ConfigError(f"{p}: 'claims' must be a list")
    out: list[Claim] = []
    first_seen: dict[str, int] = {}
    for i, raw in enumerate(data["claims"]):
        where = f"{p}: claims[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            where += f" (id '{raw['id']}')"
        try:
            claim = Claim.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(map(str, err["loc"])) or "<entry>"
            raise ConfigError(_one_line(f"{where}: {field}: {err['msg']}")) from None
        if claim.id in first_seen:
            raise ConfigError(f"{where}: id: duplicate id '{claim.id}' (first at claims[{first_seen[claim.id]}])")
        first_seen[claim.id] = i
        out.append(claim)
    return out
