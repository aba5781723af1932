"""Exception types. The CLI turns every ``PerfforgeError`` into a one-line message and a non-zero exit."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PerfforgeError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(PerfforgeError, ValueError):
    """Bad input: an unknown name, an out-of-range value, a malformed file."""


class InfeasibleError(PerfforgeError):
    """Valid input that describes something impossible (for example a job that does not fit)."""


class RegistryError(PerfforgeError, KeyError):
    """Unknown or duplicate registry key."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class UnmodelledOpError(PerfforgeError):
    """An engine was asked for the cost of an op kind it does not model."""


def suggest(name: str, known: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
