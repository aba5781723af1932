"""A hardware figure with its source. Catalog files write ``{value: "2039 GB/s", source: ds}``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from perfforge.core import units


class Figure(BaseModel):
    """One sourced number. ``value`` is SI after loading; ``source`` is a key into the file's ``sources``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    source: str
    note: str | None = None


def parse_figure(raw: Any, to: str, sources: dict[str, str], field: str) -> Figure:
    """Read a ``{value, source, note}`` mapping, converting ``value`` to SI unit ``to``."""
    if not isinstance(raw, dict):
        raise ValueError(f"{field}: expected a mapping with 'value' and 'source', got {raw!r}")
    unknown = set(raw) - {"value", "source", "note"}
    if unknown:
        raise ValueError(f"{field}: unknown keys {sorted(unknown)} (allowed: value, source, note)")
    if "value" not in raw or "source" not in raw:
        raise ValueError(f"{field}: every figure needs both 'value' and 'source'")
    if raw["source"] not in sources:
        raise ValueError(
            f"{field}: source '{raw['source']}' is not listed under 'sources' (have: {', '.join(sorted(sources))})"
        )
    value = units.parse(raw["value"], to) if to else float(raw["value"])
    return Figure(value=value, source=raw["source"], note=raw.get("note"))


class Sourced(BaseModel):
    """Mixin for catalog entries: a table of citations that figures refer to by key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, str]

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("at least one source is required")
        for key, text in v.items():
            if not text or not text.strip():
                raise ValueError(f"source '{key}' is empty")
        return v
