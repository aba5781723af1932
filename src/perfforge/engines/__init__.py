"""Engines turn (Workload, System, Scenario) into a Result. ``ENGINES`` is the registry."""

from perfforge.engines.base import ENGINES, Engine

__all__ = ["ENGINES", "Engine"]
