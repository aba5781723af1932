"""Unit parsing for catalog and user files. Everything inside perfforge is SI: s, bytes, FLOP, FLOP/s, bytes/s.

Rates and sizes use decimal prefixes (vendors quote GB/s and TFLOPS in powers of ten); binary prefixes
apply only when spelled ``KiB``/``MiB``/``GiB``/``TiB``. This avoids the silent ~7% error of reading a
vendor's "GB/s" as GiB/s.
"""

from __future__ import annotations

import re

from perfforge.core.errors import ConfigError

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}

# base unit -> (quantity, multiplier to SI)
_BASES: dict[str, tuple[str, float]] = {
    "B": ("bytes", 1.0),
    "byte": ("bytes", 1.0),
    "bytes": ("bytes", 1.0),
    "B/s": ("bytes/s", 1.0),
    "bit/s": ("bytes/s", 1.0 / 8),
    "b/s": ("bytes/s", 1.0 / 8),
    "bps": ("bytes/s", 1.0 / 8),
    "FLOPS": ("FLOP/s", 1.0),
    "FLOP/s": ("FLOP/s", 1.0),
    "OPS": ("FLOP/s", 1.0),  # integer ops per second are kept in the same slot as FLOP/s
    "OP/s": ("FLOP/s", 1.0),
    "FLOP": ("FLOP", 1.0),
    "Hz": ("Hz", 1.0),
    "s": ("s", 1.0),
    "W": ("W", 1.0),
}
_TIME = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}

_PATTERN = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/]*)\s*$")


def parse(text: str | int | float, to: str) -> float:
    """Parse ``"3.35 TB/s"`` into ``3.35e12`` given ``to="bytes/s"``. Plain numbers are taken as SI already."""
    if isinstance(text, bool):
        raise ConfigError(f"expected a quantity in {to}, got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    match = _PATTERN.match(str(text))
    if not match:
        raise ConfigError(f"cannot read quantity {text!r}; expected a number and a unit, e.g. '2 TB/s'")
    value, unit = float(match.group(1)), match.group(2)
    if unit == "":
        return value
    if to == "s" and unit in _TIME:
        return value * _TIME[unit]
    for prefix_table in (_BINARY, _DECIMAL):
        for prefix, mult in sorted(prefix_table.items(), key=lambda kv: -len(kv[0])):
            if prefix and not unit.startswith(prefix):
                continue
            base = unit[len(prefix):]
            if base in _BASES:
                quantity, base_mult = _BASES[base]
                if quantity != to:
                    raise ConfigError(f"quantity {text!r} is in {quantity}, expected {to}")
                return value * mult * base_mult
    raise ConfigError(f"unknown unit {unit!r} in {text!r} (expected {to})")


def fmt_time(seconds: float) -> str:
    """Human-readable time for reports."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.2f} us"


def fmt_bytes(n: float) -> str:
    for unit, mult in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= mult:
            return f"{n / mult:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_count(n: float) -> str:
    for unit, mult in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= mult:
            return f"{n / mult:.2f}{unit}"
    return f"{n:.0f}"
